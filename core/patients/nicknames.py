"""Readable patient nicknames, random and unrelated to identity ("Amber Heron 42")."""

import secrets

ADJECTIVES = (
    "Amber", "Azure", "Bold", "Brave", "Bright", "Calm", "Clever", "Coral", "Crimson", "Daring", "Dawn", "Eager",
    "Emerald", "Fair", "Gentle", "Golden", "Granite", "Hazel", "Indigo", "Ivory", "Jade", "Jolly", "Keen", "Kind",
    "Lively", "Lucky", "Lunar", "Maple", "Merry", "Misty", "Noble", "Ochre", "Olive", "Onyx", "Pearl", "Polar",
    "Quiet", "Rapid", "Royal", "Ruby", "Rustic", "Sage", "Sandy", "Scarlet", "Silver", "Sky", "Solar", "Steady",
    "Stone", "Sunny", "Swift", "Teal", "Tidy", "Topaz", "Umber", "Velvet", "Violet", "Warm", "Willow", "Witty",
)
ANIMALS = (
    "Albatross", "Badger", "Beaver", "Bison", "Crane", "Curlew", "Dolphin", "Dormouse", "Eagle", "Egret", "Falcon",
    "Ferret", "Finch", "Fox", "Gannet", "Gazelle", "Gecko", "Heron", "Hedgehog", "Ibex", "Ibis", "Jay", "Kestrel",
    "Kingfisher", "Koala", "Lark", "Lemur", "Lynx", "Marten", "Marmot", "Merlin", "Moose", "Narwhal", "Newt",
    "Osprey", "Otter", "Owl", "Panda", "Pelican", "Petrel", "Puffin", "Quail", "Raven", "Robin", "Salmon", "Seal",
    "Sparrow", "Stork", "Swallow", "Swan", "Tern", "Thrush", "Turtle", "Walrus", "Weasel", "Wren", "Yak", "Zebra",
)


def random_nickname() -> str:
    return f"{secrets.choice(ADJECTIVES)} {secrets.choice(ANIMALS)} {secrets.randbelow(90) + 10}"


async def unique_nickname() -> str:
    from core.patients.tables import Patient

    for _ in range(50):
        candidate = random_nickname()
        if not await Patient.exists().where(Patient.nickname == candidate):
            return candidate
    raise RuntimeError("no free nickname found")  # 313,200 combinations: practically unreachable
