"""The bus name, object path, interface and error names of finchd on D-Bus."""

BUS_NAME = "io.finchd.Finchd1"
OBJECT_PATH = "/io/finchd/Finchd1"
INTERFACE_NAME = "io.finchd.Finchd1"

ERROR_PREFIX = "io.finchd.Finchd1.Error."
# A bug in finchd; the traceback is in finchd's log, never on the bus.
INTERNAL_ERROR = ERROR_PREFIX + "Internal"
# nerdctl or containerd failed, or the engine is not running.
ENGINE_ERROR = ERROR_PREFIX + "EngineUnavailable"
# finchd is shutting down and dropped the call.
STOPPING_ERROR = ERROR_PREFIX + "Stopping"

# Maximum length of an error message sent on the bus. Longer ones are cut.
MAX_ERROR_CHARS = 300


def one_line(text: str) -> str:
    """Return the first non-blank line of `text`, cut to MAX_ERROR_CHARS."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line = lines[0] if lines else "unknown error"
    return line if len(line) <= MAX_ERROR_CHARS else line[: MAX_ERROR_CHARS - 3] + "..."
