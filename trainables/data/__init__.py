"""Datasets for every task, loaded once in the driver and encoded into arrays shipped to trials.

One module per format family (`text` with `text_files`, `conll` with `ner`, `squad` with
`reading_comprehension`), what they share in `common` (finding files, hub fallback, carving,
vocabularies), the study-file section reader and checks in `section`, tag schemes in `tag_schemes`.
Ray workers unpickle the encoded classes from these modules; none imports `datasets` or pyarrow
at import time (see trainables/_lazy.py).
"""

from __future__ import annotations

from trainables.data.common import DATA_ROOT_ENV, PAD_ID, PAD_TOKEN, SPLIT_NAMES, UNK_ID, UNK_TOKEN, DataError
from trainables.data.conll import ConllSource, read_conll
from trainables.data.ner import EncodedSentences, HubNerSource, NerData, NerDataSpec, encode_ner, load_ner, load_ner_splits
from trainables.data.reading_comprehension import (
    EncodedQuestions,
    ReadingComprehensionData,
    ReadingComprehensionDataSpec,
    align_answer,
    encode_squad,
    load_reading_comprehension,
    load_squad_splits,
    tokenize_with_offsets,
)
from trainables.data.section import FieldError, Section
from trainables.data.squad import HubSquadSource, SquadFiles, read_squad_file
from trainables.data.tag_schemes import SCHEMES, TARGET_SCHEMES, TagError, convert_scheme
from trainables.data.text import (
    EncodedSplit,
    HubSource,
    LocalSource,
    TextClassificationData,
    TextDataSpec,
    encode,
    load_splits,
    load_text_classification,
    tokenize,
)
from trainables.data.text_files import LOCAL_FORMATS

__all__ = [
    "DATA_ROOT_ENV",
    "LOCAL_FORMATS",
    "PAD_ID",
    "PAD_TOKEN",
    "SCHEMES",
    "SPLIT_NAMES",
    "TARGET_SCHEMES",
    "UNK_ID",
    "UNK_TOKEN",
    "ConllSource",
    "DataError",
    "EncodedQuestions",
    "EncodedSentences",
    "EncodedSplit",
    "FieldError",
    "HubNerSource",
    "HubSource",
    "HubSquadSource",
    "LocalSource",
    "NerData",
    "NerDataSpec",
    "ReadingComprehensionData",
    "ReadingComprehensionDataSpec",
    "Section",
    "SquadFiles",
    "TagError",
    "TextClassificationData",
    "TextDataSpec",
    "align_answer",
    "convert_scheme",
    "encode",
    "encode_ner",
    "encode_squad",
    "load_ner",
    "load_ner_splits",
    "load_reading_comprehension",
    "load_splits",
    "load_squad_splits",
    "load_text_classification",
    "read_conll",
    "read_squad_file",
    "tokenize",
    "tokenize_with_offsets",
]
