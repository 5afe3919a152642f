//! The OSCIED publisher unit. It arrives with its own issue; see README.md beside this file.
