# Copyright 2026 OSCIED contributors.
# Licensed under the Apache License, Version 2.0.

"""The shared worker lib's value checks, held to what the binaries accept and refuse.

The cases mirror oscied_protocol's own tests (queue.rs, unit/cli.rs, client.rs), so a value
the charm lets through is one the binary starts with.
"""

import pytest
from charms.oscied_orchestra.v0 import worker


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1048576", 1048576),
        ("512K", 512 << 10),
        ("500M", 500 << 20),
        ("2GiB", 2 << 30),
        ("16G", 16 << 30),
        ("1 TiB", 1 << 40),
        ("7b", 7),
    ],
)
def test_sizes(text, size):
    assert worker.parse_size(text) == size


@pytest.mark.parametrize("text", ["lots", "", "1.5G", "-1", "10X", "G", "99999999999T"])
def test_bad_sizes(text):
    with pytest.raises(ValueError):
        worker.parse_size(text)


@pytest.mark.parametrize(
    ("kind", "text", "queues"),
    [
        ("transform", "transform", ("transform",)),
        ("transform", " transform, gpu ,", ("transform", "gpu")),
        ("transform", "transform-eu,transform.x,transform_y", None),
        ("transform", "gpu.fast-1_x", ("gpu.fast-1_x",)),
        ("publisher", "publisher, cdn", ("publisher", "cdn")),
        ("publisher", "publisher_eu", ("publisher_eu",)),
        # Only the kind's own prefix followed by - . _ is reserved.
        ("publisher", "transformers", ("transformers",)),
    ],
)
def test_queues(kind, text, queues):
    got = worker.parse_queues(kind, text)
    assert got == (queues or tuple(n.strip() for n in text.split(",")))


@pytest.mark.parametrize(
    ("kind", "text", "why"),
    [
        ("transform", "", "at least one queue"),
        ("transform", " , ", "at least one queue"),
        ("transform", "publisher", "a publisher queue"),
        ("transform", "transform,publisher-eu", "a publisher queue"),
        ("publisher", "transform", "a transform queue"),
        ("publisher", "cdn,transform_gpu", "a transform queue"),
        ("transform", "a b", "not a queue name"),
        ("transform", "x" * 65, "not a queue name"),
        ("transform", "gpü", "not a queue name"),
        ("transform", "amq.gen", "AMQP's"),
        ("publisher", "unit@abc", "a unit's own queue"),
    ],
)
def test_bad_queues(kind, text, why):
    with pytest.raises(ValueError, match=why):
        worker.parse_queues(kind, text)


def test_reserved_kind():
    assert worker.reserved_kind("transform") == "transform"
    assert worker.reserved_kind("transform-gpu") == "transform"
    assert worker.reserved_kind("publisher.eu") == "publisher"
    assert worker.reserved_kind("gpu") is None
    assert worker.reserved_kind("publishers") is None


@pytest.mark.parametrize(
    "text",
    [
        "http://10.0.0.1:5000",
        "https://orchestra.example.net/api/v1/",
        "http://a:5000, http://b:5000",
    ],
)
def test_api_urls(text):
    assert worker.parse_api_urls(text) == [e.strip() for e in text.split(",")]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "names no URL"),
        (" , ", "names no URL"),
        ("orchestra:5000", "not an http"),
        ("ftp://x", "not an http"),
        ("http://", "not an http"),  # as the binary: the slashes go first
        ("http:///api/v1", "names no host"),
        ("http://a:5000/?x=1", "a query"),
        ("http://a:5000,http://b c", "a space"),
    ],
)
def test_bad_api_urls(text, why):
    with pytest.raises(ValueError, match=why):
        worker.parse_api_urls(text)
