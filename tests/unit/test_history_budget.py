"""Long training waits never approach Step Functions' 25,000-event history: on the aws profile
the settings refuse a poll interval that could (stepfunctions/README.md has the arithmetic)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from chalicelib.settings import HISTORY_BUDGET, Settings, history_events, min_poll_seconds


def test_the_defaults_fit_with_room() -> None:
    settings = Settings(profile="aws")
    assert history_events(settings.max_job_seconds, settings.poll_seconds) == 2446


def test_a_day_long_job_at_30s_is_refused_and_the_message_says_what_fits() -> None:
    assert history_events(86400, 30) > 25_000
    with pytest.raises(ValidationError, match="at least 79 s"):
        Settings(profile="aws", max_job_seconds=86400, poll_seconds=30)
    assert Settings(profile="aws", max_job_seconds=86400, poll_seconds=79).poll_seconds == 79


@pytest.mark.parametrize("max_job", [60, 3600, 86400, 5 * 24 * 3600])
def test_the_minimum_poll_interval_keeps_every_job_length_in_budget(max_job: int) -> None:
    poll = min_poll_seconds(max_job)
    assert history_events(max_job, poll) <= HISTORY_BUDGET < 25_000
    assert poll == 1 or history_events(max_job, poll - 1) > HISTORY_BUDGET


def test_zero_polling_is_refused_on_aws_and_allowed_locally() -> None:
    with pytest.raises(ValidationError, match="at least 1"):
        Settings(profile="aws", poll_seconds=0)
    assert Settings(profile="local", poll_seconds=0).poll_seconds == 0
    assert Settings(profile="aws", poll_seconds=0, jobs="local").jobs == "local"
