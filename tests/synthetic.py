"""A small CrossNER-shaped corpus made from templates, so the tiny models that the serve, spaCy,
corpus, resume, Ray, int8 and wheel tests use train on every machine, ``../shared`` or not.

``write_synthetic(root)`` writes ``conll2003/`` (CoNLL-2003's four types) and ``politics/``
(CrossNER politics' nine types), each with ``train.txt``, ``dev.txt`` and ``test.txt`` in
IOB2, seeded, so every run writes the same bytes. Every type occurs in every split, so the label
sets are the full ones. The sentences are invented; accuracy on them means nothing.
"""

from __future__ import annotations

import random
from pathlib import Path

# Slot fillers per type, "|"-separated: multi-word names give I- tags; a dozen or so per type,
# so FactMix finds alternatives to swap in.
NAMES: dict[str, str] = {
    "person": "Anna Berg|John Smith|Maria Lopez|Kenji Sato|Paul|Olga Ivanova|Tom Baker|Lena Vogel"
    "|Ravi Patel|Chen Wei|Sara Kim|Ahmed Ali",
    "politician": "Angela Merkel|Emmanuel Macron|Joe Biden|Jacinda Ardern|Lula|Olaf Scholz|"
    "Theresa May|Justin Trudeau|Narendra Modi|Cyril Ramaphosa|Pedro Sanchez|Mark Rutte",
    "organisation": "United Nations|Reuters|Siemens|Red Cross|World Bank|NATO|Interpol|"
    "Amnesty International|Bundestag|European Commission|Greenpeace|Oxfam",
    "politicalparty": "Labour Party|Green Party|Social Democrats|Liberal Party|Conservative "
    "Party|Christian Democratic Union|Socialist Party|Pirate Party|Left Party|Centre Party",
    "location": "Paris|Bavaria|New York|the Alps|Lake Geneva|Texas|Berlin|Tokyo|Lagos|Quebec|"
    "Sicily|Mumbai",
    "country": "France|Germany|Brazil|Japan|Canada|Kenya|India|Spain|Norway|Chile|Egypt|Poland",
    "election": "2019 general election|2020 presidential election|2016 referendum|2017 "
    "federal election|2021 local election|2022 snap election|2014 European election|2018 "
    "midterm election|2015 general election|2023 regional election",
    "event": "Cold War|Paris Summit|Velvet Revolution|Olympic Games|Arab Spring|G20 Summit|"
    "World War II|Brexit negotiations|Orange Revolution|Earth Summit",
    "misc": "German|French|Marxism|Kyoto Protocol|English|Catholic|Liberalism|Magna Carta|"
    "Spanish|Populism|Euro|Dutch",
}

# (template, types): each {} is filled with a name of the type in that position.
TEMPLATES: dict[str, list[tuple[str, tuple[str, ...]]]] = {
    "conll2003": [
        ("{} met {} in {} on Monday .", ("person", "person", "location")),
        ("{} said {} would open an office in {} .", ("person", "organisation", "location")),
        ("The {} striker {} scored twice .", ("misc", "person")),
        ("Shares of {} rose 3 percent in {} .", ("organisation", "location")),
        ("{} hired {} , a {} engineer .", ("organisation", "person", "misc")),
        ("Officials in {} confirmed the report .", ("location",)),
    ],
    "politics": [
        ("{} of the {} won the {} .", ("politician", "politicalparty", "election")),
        ("{} visited {} during the {} .", ("politician", "country", "event")),
        ("The {} met in {} with {} .", ("organisation", "location", "person")),
        ("{} criticised {} policy in {} .", ("politician", "misc", "country")),
        ("After the {} , the {} lost seats .", ("election", "politicalparty")),
        ("{} and {} spoke at the {} .", ("person", "politician", "event")),
    ],
}
SIZES = {"train": 32, "dev": 12, "test": 12}


def _sentence(rng: random.Random, template: str, types: tuple[str, ...]) -> list[str]:
    """The ``token<TAB>tag`` lines of one filled template."""
    lines: list[str] = []
    parts = template.split("{}")
    for k, part in enumerate(parts):
        lines += [f"{word}\tO" for word in part.split()]
        if k < len(types):
            words = rng.choice(NAMES[types[k]].split("|")).split()
            lines += [f"{w}\t{'B' if i == 0 else 'I'}-{types[k]}" for i, w in enumerate(words)]
    return lines


def write_synthetic(root: Path) -> Path:
    """Write the corpus under ``root`` (see the module doc) and return ``root``."""
    for domain, templates in TEMPLATES.items():
        rng = random.Random(f"{domain}-synthetic")
        (root / domain).mkdir(parents=True, exist_ok=True)
        for split, size in SIZES.items():
            # Every template once first, so each split holds every type of the domain.
            order = templates + [rng.choice(templates) for _ in range(size - len(templates))]
            blocks = ["\n".join(_sentence(rng, t, types)) for t, types in order]
            (root / domain / f"{split}.txt").write_text("\n\n".join(blocks) + "\n")
    return root
