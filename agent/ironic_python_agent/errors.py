# SPDX-License-Identifier: Apache-2.0
"""Errors that travel over the wire.

Every agent error serialises to ``{"type", "code", "message", "details"}``;
``type`` is the class name, which Ironic matches on. Subclasses set ``message``
and ``status_code`` as class attributes; instances carry ``details``.
"""

from __future__ import annotations

from typing import Any


class RESTError(Exception):
    """Base of every error the agent reports to Ironic."""

    message = "An error occurred"
    status_code = 500

    def __init__(self, details: str | None = None, *args: Any) -> None:
        self.details = details
        super().__init__(self.message if details is None else f"{self.message}: {details}", *args)

    @property
    def type(self) -> str:
        return type(self).__name__

    @property
    def code(self) -> int:
        return self.status_code

    def serialize(self) -> dict[str, Any]:
        return {"type": self.type, "code": self.status_code,
                "message": self.message, "details": self.details}

    # Upstream's JSON encoder serialises objects through this attribute.
    serializable_fields = ("type", "code", "message", "details")


class InvalidContentError(RESTError):
    message = "Invalid request body"
    status_code = 400


class InvalidCommandError(InvalidContentError):
    message = "Invalid command"


class InvalidCommandParamsError(InvalidContentError):
    message = "Invalid command parameters"


class NotFound(RESTError):
    message = "Not found"
    status_code = 404


class RequestedObjectNotFoundError(NotFound):
    def __init__(self, type_descr: str, obj_id: str) -> None:
        super().__init__(f"{type_descr} with id {obj_id} not found.")


class DeviceNotFound(NotFound):
    message = "Error finding the disk or partition device to deploy the image onto"


class CommandExecutionError(RESTError):
    message = "Command execution failed"


class AgentIsBusy(CommandExecutionError):
    message = "Agent is busy"
    status_code = 409

    def __init__(self, command_name: str) -> None:
        super().__init__(f"executing command {command_name}")


class ContainerNotPermittedError(RESTError):
    message = "Container image not permitted"


class IronicAPIError(RESTError):
    message = "Error in call to ironic-api"


class HeartbeatError(IronicAPIError):
    message = "Error heartbeating to agent API"


class HeartbeatConflictError(IronicAPIError):
    message = "ConflictError heartbeating to agent API"


class HeartbeatConnectionError(IronicAPIError):
    message = ("Error attempting to heartbeat - Possible transitory network failure "
               "or blocking port may be present.")


class LookupNodeError(IronicAPIError):
    message = "Error getting configuration from Ironic"


class LookupAgentIPError(IronicAPIError):
    message = "Error finding IP for Ironic Agent"


class ImageDownloadError(RESTError):
    message = "Error downloading image"

    def __init__(self, image_id: str, msg: str) -> None:
        super().__init__(f"Download of image {image_id} failed: {msg}")


class ImageDownloadOutofSpaceError(ImageDownloadError):
    pass


class ImageDownloadFatalError(ImageDownloadError):
    pass


class ImageDownloadTimeoutError(RESTError):
    message = "Image download timeout"
    status_code = 408


class ImageChecksumError(RESTError):
    message = "Error verifying image checksum"

    def __init__(self, image_id: str, image_location: str, checksum: str,
                 calculated_checksum: str) -> None:
        super().__init__(
            f"Image failed to verify against checksum. location: {image_location}; "
            f"image ID: {image_id}; image checksum: {checksum}; "
            f"verification checksum: {calculated_checksum}")


class ImageWriteError(RESTError):
    message = "Error writing image to device"

    def __init__(self, device: str, exit_code: int | str = "", stdout: str = "",
                 stderr: str = "") -> None:
        super().__init__(f"Writing image to device {device} failed with exit code "
                         f"{exit_code}. stdout: {stdout}. stderr: {stderr}")


class SystemRebootError(RESTError):
    message = "Error rebooting system"


class BlockDeviceEraseError(RESTError):
    message = "Error erasing block device"


class BlockDeviceError(RESTError):
    message = "Block device caused unknown error"


class SoftwareRAIDError(RESTError):
    message = "Software RAID caused unknown error"


class VirtualMediaBootError(RESTError):
    message = "Configuring agent from virtual media failed"


class ExtensionError(RESTError):
    pass


class UnknownNodeError(RESTError):
    message = "Agent is not associated with an Ironic node"


class HardwareManagerNotFound(RESTError):
    message = "No valid HardwareManager found"


class HardwareManagerMethodNotFound(RESTError):
    message = "No HardwareManager found to handle method"

    def __init__(self, method: str) -> None:
        super().__init__(f"Could not find method: {method}")


class HardwareManagerConfigurationError(RESTError):
    message = "Hardware manager configuration error"


class IncompatibleHardwareMethodError(RESTError):
    message = "HardwareManager method is not compatible with hardware"


class VersionMismatch(RESTError):
    message = "Hardware managers version mismatch, reload agent with correct version"
    status_code = 409

    def __init__(self, agent_version: Any, node_version: Any) -> None:
        super().__init__(f"Current versions: {agent_version}, "
                         f"versions used by ironic: {node_version}")


class CleaningError(RESTError):
    message = "Clean step failed"


class DeploymentError(RESTError):
    message = "Deploy step failed"


class ServicingError(RESTError):
    message = "Service step failed"


class ProtectedDeviceError(CleaningError):
    def __init__(self, device: str, what: str) -> None:
        self.message = (f"Protected {what} located on device {device}. This volume "
                        "or contents may be a shared block device. Please consult "
                        "your storage administrator, and restart cleaning after "
                        "either detaching the volumes, or instructing IPA to not "
                        "protect contents. See Ironic Python Agent documentation "
                        "for more information.")
        super().__init__(self.message)


class InvalidImage(DeploymentError):
    message = "The provided image is not valid for use"


class IncompatibleNumaFormatError(RESTError):
    message = "Error in NUMA node data format"


class ClockSyncError(RESTError):
    message = "Error syncing system clock"


class FileSystemNotSupported(RESTError):
    # Upstream cannot serialise this one; ours can.
    message = "Failed to create a file system"


class ServiceLookupFailure(RESTError):
    message = "Cannot find a service through mDNS"


class InspectionError(Exception):
    """Failure inside the inspection flow; never sent as a command error."""
