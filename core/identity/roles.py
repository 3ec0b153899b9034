"""The roles CPMS defines. Which permissions each grants is data (``identity_role_permission``)."""

ROLES: dict[str, str] = {
    "admin": "Platform administrator (helpdesk): manages ERNs, HCPs and users; sees no patient data",
    "hp": "Healthcare professional: enrols patients, creates and joins panels",
    "coordinator": "ERN coordinator: everything an HP does, plus access requests, panel assembly and KPIs",
    "dispatcher": "Dispatcher: everything an HP does, plus panel assembly on the coordinator's behalf",
    "researcher": "Researcher: anonymised research data only",
    "guest": "Guest expert invited into one panel; the account expires",
    "assistant": "Assistant acting for named HPs of the same HCP",
}

#: Roles held in an ERN (the others are platform-wide).
ERN_ROLES = ("hp", "coordinator", "dispatcher", "researcher", "guest", "assistant")
