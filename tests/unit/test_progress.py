"""Progress bars (scripts/progress.py): drawn on a terminal, silent when the output is piped or captured."""
import io

from rich.console import Console

from scripts.progress import progress, tracked


def _console(terminal: bool) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=terminal, width=100), out


def test_a_bar_is_drawn_on_a_terminal():
    console, out = _console(True)
    with progress("events sent", 10, console=console) as advance:
        advance(4)
        advance(completed=10)
    assert "events sent" in out.getvalue() and "10/10" in out.getvalue()


def test_nothing_is_written_when_not_a_terminal(capsys):
    console, out = _console(False)
    with progress("events sent", 10, console=console) as advance:
        advance(10)
    assert out.getvalue() == ""
    assert list(tracked(range(3), "seeds")) == [0, 1, 2]    # default console: stderr, captured by pytest
    assert capsys.readouterr() == ("", "")
