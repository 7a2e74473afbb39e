"""The errors this package raises, as Airflow exceptions so that Airflow's retry rules apply to them.

Bad input (a staged model, a bundle, a registry conflict) can never succeed on a retry, so it fails the
task at once (`AirflowFailException`); a service that answers wrongly or not at all may recover, so it
is an ordinary `AirflowException` that Airflow retries.
"""

from airflow.sdk.exceptions import AirflowException, AirflowFailException


class ModelGovernanceError(AirflowException):
    """A step failed for a reason that a retry may cure (a service down, a timeout)."""


class InvalidInputError(AirflowFailException):
    """What the run was given is wrong: no retry, fix the input and trigger again."""


class MetadataError(InvalidInputError):
    """`modelMetadata.txt` is unreadable, malformed, or lacks a required key."""


class StagingError(InvalidInputError):
    """The staged model is missing, unsafe, or not laid out as the framework requires."""


class BundleError(InvalidInputError):
    """The serialized model is not a valid bundle."""


class RegistryConflictError(InvalidInputError):
    """The registry already holds this model version with different content."""


class RegistryError(ModelGovernanceError):
    """The registry did not do what was asked (upload, verify, rename)."""


class DeployError(ModelGovernanceError):
    """The serving host could not be reached or did not serve the model."""


class ServingConfigError(DeployError, AirflowFailException):
    """The serving connection is set up wrong (no host, an unknown api or delivery): no retry, fix it."""


class ModelLoadError(AirflowFailException):
    """The serving host answered that it cannot load the model: asking again gives the same answer."""


class ModelVerificationError(AirflowFailException):
    """The model loaded but does not serve right (no schema, or its sample scoring failed); rolled back."""


class AtlasError(ModelGovernanceError):
    """Atlas refused or failed a call; carries Atlas's own error code and message."""

    def __init__(self, message: str, status: int | None = None, error_code: str | None = None):
        super().__init__(message)
        self.status = status
        self.error_code = error_code


class AtlasRefusedError(AtlasError, AirflowFailException):
    """Atlas answered 4xx (wrong credentials, a type conflict…): asking again repeats the answer, so the
    task fails at once, without Airflow's retries."""


class TamperedArchiveError(InvalidInputError):
    """An archived version no longer matches what was recorded (its manifest, or Atlas's checksums): it
    is not served again, and a retry would read the same bytes."""


class DeploymentRejectedError(AirflowFailException):
    """The approver rejected the deployment: the run ends, nothing is deployed, no retry."""
