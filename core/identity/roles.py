"""The roles CPMS defines. Which permissions each grants is data (``identity_role_permission``)."""

ROLES: dict[str, str] = {
    "admin": "Platform administrator (helpdesk): manages ERNs, HCPs and users; sees no patient data",
    "hp": "Healthcare professional: enrols patients, creates and joins panels",
    "coordinator": "ERN coordinator: everything an HP does, plus access requests, panel assembly and KPIs",
    "dispatcher": "Dispatcher: everything an HP does, plus panel assembly on the coordinator's behalf",
    "researcher": "Researcher: anonymised research data only",
    "guest": "Guest expert invited into one panel; the account expires",
    "assistant": "Assistant acting for named HPs of the same HCP",
    "dpo": "Data-protection officer: browses and exports the audit of the hospital's patients",
}

#: Roles held platform-wide (not in an ERN); a DPO's scope is their own hospital.
PLATFORM_ROLES = frozenset({"admin", "dpo"})

#: Roles held in an ERN (the others are platform-wide).
ERN_ROLES = ("hp", "coordinator", "dispatcher", "researcher", "guest", "assistant")

#: Roles that can see patient data (or, for admin, manage who can): a second factor is mandatory.
MFA_ROLES = frozenset({"admin", "dpo", "hp", "coordinator", "dispatcher", "guest", "assistant"})

#: Roles that need the HP role in the same ERN.
NEEDS_HP = frozenset({"coordinator", "dispatcher"})

#: Roles a person may ask for in an access request (admin is given, never requested).
REQUESTABLE = ("hp", "coordinator", "dispatcher", "researcher", "assistant")

#: Days a guest account lasts unless a coordinator extends it.
GUEST_DAYS = 90
