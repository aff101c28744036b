"""user_error_message: the user error inside jsonargparse's wrappers is one line; a bug stays a bug."""

from __future__ import annotations

import errno
from typing import Optional

import pytest
from jsonargparse import ArgumentParser

from speechkit.errors import (
    SpeechkitError,
    condense_parser_message,
    decode_error_message,
    exception_chain,
    user_error_message,
)


class Component:
    """Base class for the parser below: its subclasses fail in __init__ as a task or a data config would."""


class UserMistake(Component):
    def __init__(self, layers: int = 1) -> None:
        raise SpeechkitError(f"layers={layers}: expected 0..2")


class Bug(Component):
    def __init__(self, layers: int = 1) -> None:
        raise RuntimeError("a bug: shapes (2, 3) and (4, 5)")


class Fine(Component):
    def __init__(self, layers: int = 1) -> None:
        self.layers = layers


def instantiate(class_name: str, *args: str) -> BaseException:
    """Parse and instantiate ``--component`` as LightningCLI does; return what jsonargparse raised."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--component", type=Optional[Component])
    try:
        config = parser.parse_args(["--component", f"{__name__}.{class_name}", *args])
        parser.instantiate(config)
    except Exception as error:  # noqa: BLE001 - the test inspects it
        return error
    raise AssertionError("expected an exception")


def test_speechkit_error_wrapped_by_jsonargparse_is_unwrapped():
    error = instantiate("UserMistake", "--component.layers", "99")
    assert not isinstance(error, SpeechkitError)  # jsonargparse's "Does not validate ..." wrapper
    assert "Does not validate" in str(error) and len(str(error).splitlines()) > 3
    assert user_error_message(error) == "layers=99: expected 0..2"


def test_bug_inside_jsonargparse_stays_a_bug():
    error = instantiate("Bug")
    assert any(isinstance(link, RuntimeError) for link in exception_chain(error))
    assert user_error_message(error) is None
    assert user_error_message(RuntimeError("x")) is None and user_error_message(KeyError(105)) is None


def test_parse_error_is_condensed_to_one_line():
    error = instantiate("Fine", "--component.layerz", "3")
    message = user_error_message(error)
    assert message is not None and "\n" not in message
    assert "layerz" in message and "Does not validate" not in message and "NoneType" not in message


def test_condense_parser_message():
    text = (
        'Parser key "model":\n  Does not validate against any of the Union subtypes\n  Subtypes: [A, None]\n'
        "  Errors:\n    - Problem with given class_path 'x.Task':\n        Option 'hiddden' is not accepted\n"
        "    - Expected a <class 'NoneType'>\n  Given value type: <class 'dict'>\n  Given value: {}"
    )
    assert condense_parser_message(text) == (
        "Parser key \"model\": Problem with given class_path 'x.Task': Option 'hiddden' is not accepted"
    )


def test_os_errors_on_user_paths_are_one_line_naming_the_path():
    assert user_error_message(PermissionError(errno.EACCES, "Permission denied", "/out/x.json")) == (
        "/out/x.json: Permission denied"
    )
    assert user_error_message(OSError(errno.ENOSPC, "No space left on device", "/out/a.ckpt")) == (
        "/out/a.ckpt: no space left on the device"
    )
    wrapped = SpeechkitError("whisper 'dir': cannot load")
    wrapped.__cause__ = FileNotFoundError(errno.ENOENT, "No such file", "dir/config.json")
    assert user_error_message(wrapped) == "whisper 'dir': cannot load"  # the outermost SpeechkitError wins
    assert user_error_message(OSError(errno.EIO, "I/O error", "/dev/sda")) is None  # not a user-path error
    assert user_error_message(OSError(errno.EACCES, "Permission denied")) is None  # no path to name


def test_worker_reraised_speechkit_error_is_its_last_line():
    """A DataLoader worker re-raises the error with its traceback in the message: print only the message."""
    text = (
        "Caught SpeechkitError in DataLoader worker process 0.\n"
        'Original Traceback (most recent call last):\n  File "x"\n'
    )
    error = SpeechkitError(text + "speechkit.errors.SpeechkitError: cut 'a': audio file missing")
    assert user_error_message(error) == "cut 'a': audio file missing"


def test_decode_error_names_the_byte():
    try:
        b"ok caf\xe9\n".decode("utf-8")
    except UnicodeDecodeError as error:
        assert decode_error_message(error, "ref.txt") == (
            "ref.txt: not UTF-8 text (byte 0xe9 at offset 6: invalid continuation byte)"
        )
        assert user_error_message(error) == "not UTF-8 text (byte 0xe9 at offset 6: invalid continuation byte)"


def test_chain_stops_at_cycles():
    first, second = ValueError("a"), ValueError("b")
    first.__context__, second.__context__ = second, first
    assert exception_chain(first) == [first, second]


@pytest.mark.parametrize("value", ["", "0"])
def test_debug_off_values(monkeypatch, value):
    from speechkit.errors import debug_enabled

    monkeypatch.setenv("SPEECHKIT_DEBUG", value)
    assert not debug_enabled()
    monkeypatch.setenv("SPEECHKIT_DEBUG", "1")
    assert debug_enabled()
