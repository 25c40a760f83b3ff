"""finchd's error hierarchy, one class per HTTP status.

    FinchdError                 500, message hidden from clients
    ├── NotModifiedError        304, no body
    ├── InvalidParameterError   400
    ├── UnauthorizedError       401
    ├── ForbiddenError          403
    ├── NotFoundError           404
    │   ├── NoSuchContainerError
    │   └── NoSuchImageError
    ├── ConflictError           409
    ├── UnsupportedError        501
    ├── UnavailableError        503
    └── EngineError             500, message shown (nerdctl or the engine failed)

The API middleware maps each class to Docker's body `{"message": ...}` once. The
wording of messages is part of the wire contract: docker-py picks `ImageNotFound`
or `NotFound` from the words "No such image" in a 404 message.
"""

from __future__ import annotations


class FinchdError(Exception):
    """Base of every error that the API turns into a Docker error response."""

    status = 500
    public = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotModifiedError(FinchdError):
    """The request changed nothing, as with starting a running container."""

    status = 304
    public = True


class InvalidParameterError(FinchdError):
    status = 400
    public = True


class UnauthorizedError(FinchdError):
    status = 401
    public = True


class ForbiddenError(FinchdError):
    status = 403
    public = True


class NotFoundError(FinchdError):
    status = 404
    public = True


class NoSuchContainerError(NotFoundError):
    def __init__(self, reference: str) -> None:
        super().__init__(f"No such container: {reference}")


class NoSuchImageError(NotFoundError):
    def __init__(self, reference: str) -> None:
        super().__init__(f"No such image: {reference}")


class ConflictError(FinchdError):
    status = 409
    public = True


class UnsupportedError(FinchdError):
    """The endpoint or option exists in Docker's API but finchd does not serve it."""

    status = 501
    public = True


class UnavailableError(FinchdError):
    """The request needs a service that is not running, as swarm mode is for cluster volumes."""

    status = 503
    public = True


class EngineError(FinchdError):
    """nerdctl or the engine failed. The message comes from nerdctl's stderr."""

    status = 500
    public = True
