"""flowkit._utils.uuids: random UUID text as uuid.uuid4() writes it."""

from __future__ import annotations

import os
import uuid

import pytest

from flowkit._utils.uuids import random_uuid


def test_random_uuids_are_version_4_in_the_usual_text_form() -> None:
    seen = {random_uuid() for _ in range(2000)}
    assert len(seen) == 2000
    for text in seen:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def test_new_atom_records_get_distinct_version_4_uuids_made_when_asked() -> None:
    from flowkit._atom_record import AtomRecord

    records = [AtomRecord(f"a{i}", None, "1.0", False) for i in range(1000)]
    texts = [record.uuid for record in records]
    assert len(set(texts)) == 1000
    for text in texts:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4
    # Made once: asking again gives the same text.
    assert [record.uuid for record in records] == texts
    stored = str(uuid.uuid4())
    assert AtomRecord("b", stored, "1.0", False).uuid == stored


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork() on this platform")
def test_a_forked_child_draws_its_own_atom_uuids() -> None:
    from flowkit._atom_record import AtomRecord

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report one new uuid and leave at once
        os.write(write, AtomRecord("c", None, "1.0", False).uuid.encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        child = pipe.read()
    mine = AtomRecord("c", None, "1.0", False).uuid
    assert child[:24] != mine[:24]
