"""Every permission of the console, named once: what the pages check and the roles grant."""

APP_LABEL = "core"
ALL: list[tuple[str, str]] = []  # (codename, description), for the Role model's Meta


def _named(codename: str, description: str) -> str:
    ALL.append((codename, description))
    return f"{APP_LABEL}.{codename}"


def codename(permission: str) -> str:
    return permission.removeprefix(f"{APP_LABEL}.")


VIEW_AUDIT = _named("view_audit", "Can read audit records")
VIEW_RAW_AUDIT = _named(
    "view_raw_audit", "Can read the full prompts and completions of audit records"
)
VIEW_STATE = _named("view_state", "Can read deployment state and runs")
START_PROVISIONING = _named("start_provisioning", "Can plan and apply environments")
START_ROLLOUT = _named("start_rollout", "Can roll out and roll back the serving image")
VIEW_API_KEYS = _named("view_api_keys", "Can see API keys (never their values) and usage plans")
MANAGE_API_KEYS = _named("manage_api_keys", "Can create, disable and delete API keys")
MANAGE_USERS = _named("manage_users", "Can manage users and their roles")
CHANGE_POLICY = _named(
    "change_policy", "Can change environments' quotas, retention, redaction rules and secrets"
)
MANAGE_QUEUES = _named("manage_queues", "Can see and change the job queues and their workers")
