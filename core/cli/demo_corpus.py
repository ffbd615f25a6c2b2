"""A small example corpus for ``rerankit demo``, written for rerankit and released under CC0."""

from __future__ import annotations

PASSAGES: dict[str, str] = {
    "tea-1": "Green tea is made from unoxidised leaves of Camellia sinensis and is steamed or "
    "pan-fired soon after picking to keep its colour.",
    "tea-2": "Black tea leaves are fully oxidised before drying, which darkens them and gives the "
    "brew its malty flavour.",
    "tea-3": "A tea party in Boston in 1773 was a political protest against British taxation, "
    "not a gathering to drink tea.",
    "tea-4": "Steep green tea at about 80 degrees Celsius for two minutes; boiling water makes it "
    "bitter.",
    "bike-1": "To fix a flat bicycle tyre, remove the wheel, lever off the tyre, find the hole in "
    "the inner tube and patch it or fit a new tube.",
    "bike-2": "Bicycle chains last longer when they are cleaned and oiled every few hundred "
    "kilometres.",
    "bike-3": "A flat route is easier on a bicycle, but headwinds can make a flat ride as hard as "
    "a hill.",
    "bike-4": "Tyre pressure for road bicycles is usually between 80 and 100 psi; check it weekly "
    "because tubes slowly lose air.",
    "space-1": "The Moon has no atmosphere, so its sky looks black even during the lunar day.",
    "space-2": "The sky on Earth is blue because air molecules scatter short blue wavelengths of "
    "sunlight more than red ones.",
    "space-3": "Sunsets look red and orange because light crosses more air near the horizon and "
    "the blue light is scattered away.",
    "space-4": "Mars has a thin carbon dioxide atmosphere, and its dust makes the daytime sky look "
    "butterscotch rather than blue.",
    "bread-1": "Bread rises because yeast ferments sugars and releases carbon dioxide, which the "
    "gluten network traps as bubbles.",
    "bread-2": "Sourdough uses a starter of wild yeast and lactic acid bacteria instead of "
    "commercial yeast.",
    "bread-3": "Bread flour has more protein than cake flour, so it forms stronger gluten.",
    "bread-4": "A sponge cake rises from air whipped into the eggs rather than from yeast.",
    "python-1": "In Python, a list comprehension builds a new list from an iterable in one "
    "expression, for example squares = [x * x for x in numbers].",
    "python-2": "The ball python is a snake native to West and Central Africa that curls into a "
    "ball when threatened.",
    "python-3": "Python's asyncio runs many coroutines on one thread; blocking calls should be "
    "moved to a worker thread with asyncio.to_thread.",
    "python-4": "Pythons kill their prey by constriction and swallow it whole.",
}

QUERIES: list[tuple[str, set[str]]] = [
    ("why is the sky blue during the day", {"space-2"}),
    ("how do I repair a punctured bike tube", {"bike-1"}),
    ("what makes dough rise", {"bread-1", "bread-2"}),
    ("run blocking code without freezing the event loop in python", {"python-3"}),
    ("what temperature should water be for green tea", {"tea-4"}),
]
