"""A stop signal sets a flag and the handlers in place before come back; the time limit passes once."""

import signal

import pytest

from rmt_cli import stopping
from rmt_cli.stopping import STOP_SIGNALS, Deadline, StopSignals


@pytest.fixture
def own_handlers():
    """A handler of the test's own on every stop signal, put back as it was afterwards."""
    received = []

    def handler(signum, frame):
        received.append(signum)

    before = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    yield handler, received
    for sig, previous in before.items():
        signal.signal(sig, previous)


def test_a_signal_only_asks_to_stop_and_the_previous_handlers_come_back(own_handlers):
    handler, received = own_handlers
    notes = []
    with StopSignals(notes.append) as stop:
        assert all(signal.getsignal(sig) == stop.request_stop for sig in STOP_SIGNALS)
        signal.raise_signal(signal.SIGUSR2)
        assert stop.received == signal.SIGUSR2
    assert notes == ["SIGUSR2: stopping after this step (signal again to abort)"]
    assert received == []  # ours took it
    assert all(signal.getsignal(sig) is handler for sig in STOP_SIGNALS)


def test_the_previous_handlers_come_back_after_an_error_too(own_handlers):
    handler, _ = own_handlers
    with pytest.raises(RuntimeError), StopSignals(lambda line: None):
        raise RuntimeError("failed inside")
    assert all(signal.getsignal(sig) is handler for sig in STOP_SIGNALS)


def test_a_second_signal_aborts_a_lone_process_but_not_a_data_parallel_worker(own_handlers):
    with StopSignals(lambda line: None) as stop:
        signal.raise_signal(signal.SIGTERM)
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
    with StopSignals(lambda line: None, abort_on_second=False) as stop:
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGINT)  # torchrun's own SIGTERM after a Ctrl-C: the worker must still save
        assert stop.received == signal.SIGTERM


def test_the_signal_is_passed_on_to_the_handler_before_ours(own_handlers):
    _, received = own_handlers
    with StopSignals(lambda line: None) as stop:
        stop.pass_on()  # no signal of this process's own: nothing to pass on
        signal.raise_signal(signal.SIGUSR2)
        stop.pass_on()
    assert received == [signal.SIGUSR2]


def test_a_deadline_passes_after_its_minutes_and_none_never(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(stopping.time, "perf_counter", lambda: now[0])
    deadline, unlimited = Deadline(0.5), Deadline(None)
    now[0] += 30
    assert not deadline.passed() and not unlimited.passed()
    now[0] += 0.001
    assert deadline.passed() and not unlimited.passed()
