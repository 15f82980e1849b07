"""The one rule for a queue's name, checked wherever a name comes in.

Enqueue (the backend), the API, the admin and the management commands all ask
``is_queue_name``, so a name one of them accepts is a name every other one accepts.
The whole string must match (``fullmatch``): a ``$``-anchored ``match`` would also
accept a name that ends in a newline.
"""

import re

_QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}")

# The rule in words, for the messages that refuse a name.
RULE = "1-100 letters, digits, '_', '.', ':' or '-', starting with a letter or digit"


def is_queue_name(value: str) -> bool:
    """Whether ``value`` is a valid queue name, the whole of it."""
    return _QUEUE_NAME.fullmatch(value) is not None
