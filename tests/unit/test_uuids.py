"""flowkit._utils.uuids: random UUID text as uuid.uuid4() writes it."""

from __future__ import annotations

import uuid

from flowkit._utils.uuids import random_uuid


def test_random_uuids_are_version_4_in_the_usual_text_form() -> None:
    seen = {random_uuid() for _ in range(2000)}
    assert len(seen) == 2000
    for text in seen:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
