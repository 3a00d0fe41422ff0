"""The vmadm dialect: SmartOS create payloads (brand kvm or bhyve) checked like `vmadm validate` and turned
into vmhost spec documents for any driver."""

from vmhost.dialects.vmadm.convert import payload_to_spec
from vmhost.dialects.vmadm.errors import DialectError
from vmhost.dialects.vmadm.validate import validate_payload
from vmhost.dialects.vmadm.validation import VmadmValidation

__all__ = ["DialectError", "VmadmValidation", "payload_to_spec", "validate_payload"]
