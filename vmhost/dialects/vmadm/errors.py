"""A payload vmhost cannot take: a SpecError (so the CLI and API show it like any spec problem) that also
carries vmadm's own view of the payload."""

from collections.abc import Sequence

from vmhost.dialects.vmadm.validation import VmadmValidation
from vmhost.spec.errors import Problem, SpecError


class DialectError(SpecError):
    def __init__(self, problems: Sequence[Problem], validation: VmadmValidation):
        super().__init__(problems)
        self.validation = validation
