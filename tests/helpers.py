"""What the tests share: the sandbox's credentials for this suite."""

from __future__ import annotations

from plugz_async.sandbox import SandboxConfig

INSTANCE_ID = "3C0FFEE-instance"
# Secrets with characters that change under URL encoding, to test both forms.
INSTANCE_TOKEN = "tok/SECRET+instance=42"
CLIENT_TOKEN = "ct-SECRET-account+token/7"

CONFIG = SandboxConfig(
    instance_id=INSTANCE_ID, instance_token=INSTANCE_TOKEN, client_token=CLIENT_TOKEN
)
