//! The one way the orchestra takes a std mutex: what each one guards is changed in single
//! steps, so it stays consistent whatever panicked while holding it, and a poisoned lock is
//! taken as it is rather than turned into a second panic.

use std::sync::{Mutex, MutexGuard};

pub fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
