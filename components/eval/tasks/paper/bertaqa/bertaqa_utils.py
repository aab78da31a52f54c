"""BertaQA's local / global halves: the dataset's ``group`` column says which (the same Basque labels in the
``eu`` and ``en`` configs)."""

LOCAL_GROUP = "Euskal gaiak"      # questions about Basque culture
GLOBAL_GROUP = "Gai orokorrak"    # general-knowledge questions


def _only(dataset, group: str):
    return dataset.filter(lambda doc: doc["group"] == group)


def process_docs_global(dataset):
    """Keep the general-knowledge questions ("Gai orokorrak")."""
    return _only(dataset, GLOBAL_GROUP)


def process_docs_local(dataset):
    """Keep the Basque-culture questions ("Euskal gaiak")."""
    return _only(dataset, LOCAL_GROUP)
