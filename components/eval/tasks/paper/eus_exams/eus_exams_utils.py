"""EusExams: drop the items that cannot be scored (no valid answer index, or no candidate texts)."""

VALID_ANSWERS = (0, 1, 2, 3)
EMPTY_CANDIDATES = ["", "", "", ""]


def _scorable(doc: dict) -> bool:
    return doc["answer"] in VALID_ANSWERS and doc["candidates"] != EMPTY_CANDIDATES


def process_docs(dataset):
    """The subset without unscorable items (applied to the few-shot pool too: it is the same test split)."""
    return dataset.filter(_scorable)
