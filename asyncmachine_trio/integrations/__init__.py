"""Machines beyond one host and one language: JSON control messages, NATS, MCP.

- :mod:`.messages` and :mod:`.handlers` (no extra): JSON requests and responses
  with the reference's ``kind`` discriminator, and transport-agnostic handlers.
- :mod:`.nats` (extra ``nats``): a machine exposed on NATS subjects.
- :mod:`.mcp` (extra ``mcp``): an MCP server for a machine.
"""

from .errors import AddAndRemoveError as AddAndRemoveError
from .errors import IntegrationError as IntegrationError
from .errors import InternalError as InternalError
from .errors import MalformedMessageError as MalformedMessageError
from .errors import MessageTooLargeError as MessageTooLargeError
from .errors import NoStatesError as NoStatesError
from .errors import RequestCanceledError as RequestCanceledError
from .errors import RequestTimeoutError as RequestTimeoutError
from .errors import StateNotAllowedError as StateNotAllowedError
from .errors import TimeLengthError as TimeLengthError
from .errors import UnknownKindError as UnknownKindError
from .errors import UnknownStateError as UnknownStateError
from .handlers import error_response as error_response
from .handlers import handle_getter as handle_getter
from .handlers import handle_json as handle_json
from .handlers import handle_mutation as handle_mutation
from .handlers import handle_payload as handle_payload
from .handlers import handle_request as handle_request
from .handlers import handle_waiting as handle_waiting
from .messages import MAX_DEPTH as MAX_DEPTH
from .messages import MAX_MESSAGE_SIZE as MAX_MESSAGE_SIZE
from .messages import ErrorInfo as ErrorInfo
from .messages import ErrorResp as ErrorResp
from .messages import GetterReq as GetterReq
from .messages import GetterResp as GetterResp
from .messages import Kind as Kind
from .messages import MutationReq as MutationReq
from .messages import MutationResp as MutationResp
from .messages import WaitingReq as WaitingReq
from .messages import WaitingResp as WaitingResp
from .messages import decode as decode
from .messages import decode_request as decode_request
from .messages import decode_response as decode_response
from .messages import encode as encode
from .messages import from_dict as from_dict
from .messages import to_dict as to_dict
