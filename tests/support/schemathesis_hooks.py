"""schemathesis hooks for tests/test_api_schemathesis.py (loaded through tests/schemathesis.toml).

STOW-RS bodies are multipart/related, which schemathesis does not serialize by itself: the generated
bytes are sent as they are (the route then refuses them: no boundary, 415, as the document says).
"""

import schemathesis


@schemathesis.serializer("multipart/related")
def multipart_related(ctx, value):
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8")
