from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import settings

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
# Sub-word encodings are cached on disk: never in the user's cache, and never from an earlier run.
os.environ["SEARCH_CACHE_DIR"] = tempfile.mkdtemp(prefix="search-subword-cache-")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# CI runs the property tests on a fixed seed, so a build passes or fails on the code alone;
# runs elsewhere draw new examples (what they find is kept as an @example).
settings.register_profile("ci", derandomize=True, database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real datasets beside the repository (../shared/data); tests skip without them."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (expected ../shared/data beside the repository)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory):
    """A real PostgreSQL server on loopback for the test session (Debian's packages, installed by
    .ci/run); a SQLAlchemy URL to an empty database."""
    from search.testing import PostgresUnavailable, postgres_server

    try:
        with postgres_server() as url:
            yield url
    except PostgresUnavailable as error:
        pytest.skip(str(error))


@pytest.fixture(scope="session")
def ray_session(tmp_path_factory: pytest.TempPathFactory):
    """One local Ray for the whole test session, with its files in the session's temp folder."""
    import ray

    temp_dir = tmp_path_factory.mktemp("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False, _temp_dir=str(temp_dir))
    yield ray
    ray.shutdown()


POSITIVE = ["good", "great", "fine", "superb", "lovely", "fun", "bright", "warm"]
NEGATIVE = ["bad", "awful", "dull", "poor", "boring", "grim", "weak", "cold"]
FILLER = ["the", "film", "was", "a", "story", "with", "actors", "and", "plot", "it", "very", "quite", "this", "movie"]


def write_sentiment_csv(folder: Path, sizes: dict[str, int] | None = None, seed: int = 0) -> dict[str, str]:
    """A small learnable dataset: the label follows the sentiment words, among filler words."""
    rng = random.Random(seed)
    sizes = sizes or {"train": 600, "validation": 150, "test": 150}
    files = {}
    for split, size in sizes.items():
        path = folder / f"{split}.csv"
        lines = ["text,label"]
        for _ in range(size):
            label = rng.randint(0, 1)
            cue = POSITIVE if label else NEGATIVE
            words = rng.choices(FILLER, k=rng.randint(4, 12)) + rng.choices(cue, k=rng.randint(1, 2))
            rng.shuffle(words)
            lines.append(f"{' '.join(words)},{'pos' if label else 'neg'}")
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        files[split] = path.name
    return files


@pytest.fixture()
def sentiment_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "toy").mkdir(parents=True)
    write_sentiment_csv(root / "toy")
    return root


def toy_study_yaml(
    storage: str, *, trials: int = 4, max_epochs: int = 3, concurrency: int = 2, name: str = "toy", extra_space: str = "",
    checkpoint_every_s: float = 10.0,
) -> str:
    return f"""# test study
name: {name}
task: text_classification
seed: 0
data:
  name: toy
  local:
    format: csv
    files: {{train: toy/train.csv, validation: toy/validation.csv, test: toy/test.csv}}
  max_length: 32
metric: accuracy
direction: maximize
budget:
  trials: {trials}
  max_epochs: {max_epochs}
  concurrency: {concurrency}
  resources: {{cpu: 1, gpu: 0}}
  checkpoint_every_s: {checkpoint_every_s}
asha:
  grace_period: 1
  reduction_factor: 2
storage: {storage}
space:
  encoder: {{choices: [textcnn, bilstm], params: {{textcnn: {{filters: 32, layers: 1}}, bilstm: {{hidden: 32, layers: 1}}}}}}
  addons: [layernorm]
  loss: [cross_entropy, focal]
  regularizers: {{search: [weight_decay], always: [dropout]}}
  optimizer: {{choices: [adam, sgd], params: {{adam: {{lr: [0.003, 0.01]}}, sgd: {{lr: [0.0001, 0.0002], momentum: 0.0}}}}}}
  schedule: [constant, cosine]
  batch_size: 32
  embedding_dim: 32
{extra_space}"""


PEOPLE = [["John", "Smith"], ["Mary"], ["Ana", "Lopez"], ["Wei"], ["Olga", "Petrova"], ["Tom"]]
PLACES = [["Paris"], ["New", "York"], ["Lima"], ["Oslo"], ["Cape", "Town"]]
TEMPLATES = [
    ["PER", "went", "to", "LOC", "."],
    ["PER", "lives", "in", "LOC", "."],
    ["yesterday", "PER", "met", "PER", "in", "LOC", "."],
    ["the", "weather", "was", "fine", "."],
    ["LOC", "is", "far", "from", "LOC", "."],
]


def conll_sentences(count: int, seed: int = 0) -> list[list[tuple[str, str]]]:
    """Sentences of (token, IOB2 tag) from templates; entities come from fixed lists."""
    rng = random.Random(seed)
    sentences = []
    for _ in range(count):
        sentence = []
        for slot in rng.choice(TEMPLATES):
            if slot in ("PER", "LOC"):
                words = rng.choice(PEOPLE if slot == "PER" else PLACES)
                sentence += [(word, f"{'B' if i == 0 else 'I'}-{slot}") for i, word in enumerate(words)]
            else:
                sentence.append((slot, "O"))
        sentences.append(sentence)
    return sentences


def write_conll_files(folder: Path, sizes: dict[str, int] | None = None) -> dict[str, str]:
    """CoNLL files (token TAB tag, blank line between sentences, a -DOCSTART- header)."""
    sizes = sizes or {"train": 300, "validation": 80, "test": 80}
    files = {}
    for seed, (split, size) in enumerate(sizes.items()):
        lines = ["-DOCSTART-\tO", ""]
        for sentence in conll_sentences(size, seed=seed):
            lines += [f"{token}\t{tag}" for token, tag in sentence] + [""]
        path = folder / f"{split}.conll"
        path.write_text("\n".join(lines), encoding="utf-8")
        files[split] = path.name
    return files


@pytest.fixture()
def conll_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "ner").mkdir(parents=True)
    write_conll_files(root / "ner")
    return root


def ner_study_yaml(storage: str, *, trials: int = 4, max_epochs: int = 3, concurrency: int = 2, name: str = "toyner") -> str:
    return f"""# test study
name: {name}
task: ner
seed: 0
data:
  name: toyner
  local:
    format: conll
    scheme: iob2
    files: {{train: ner/train.conll, validation: ner/validation.conll, test: ner/test.conll}}
  scheme: bioes
metric: f1
budget:
  trials: {trials}
  max_epochs: {max_epochs}
  concurrency: {concurrency}
  resources: {{cpu: 1, gpu: 0}}
asha:
  grace_period: 1
  reduction_factor: 2
storage: {storage}
space:
  char_encoder: {{choices: [cnn, none], params: {{cnn: {{char_dim: 25, filters: 25}}}}}}
  encoder: {{choices: [bilstm], params: {{bilstm: {{hidden: 32, layers: 1}}}}}}
  addons: []
  head: [crf, softmax]
  loss: [cross_entropy, focal, ghm]
  regularizers: {{search: [], always: [dropout], params: {{dropout: {{p: 0.1}}}}}}
  optimizer: {{choices: [adam], params: {{adam: {{lr: 0.01}}}}}}
  schedule: constant
  batch_size: 16
  embedding_dim: 32
"""


# --------------------------------------------------------------------------------------------
# A tiny pretrained encoder: random weights, where what is tested does not depend on them


TINY_BERT_WORDS = sorted({*POSITIVE, *NEGATIVE, *FILLER, "went", "to", "lives", "in", "yesterday", "met", "weather", "is", "far", "from",
                          "john", "smith", "mary", "ana", "lopez", "wei", "paris", "new", "york", "lima", "oslo", "cape", "town",
                          "who", "what", "where", "when", "did", "of", ".", ",", "?", "'", "s"})
TINY_BERT_PIECES = ["##s", "##ed", "##ing", "##a", "##o", "##e", "##n", "##y"]


def save_tiny_bert(folder: Path, *, layers: int = 2, hidden: int = 16) -> Path:
    """A randomly initialised BERT (a few thousand weights) and its fast WordPiece tokenizer, saved
    as a Hugging Face model folder, as `from_pretrained` reads one."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *TINY_BERT_WORDS, *TINY_BERT_PIECES]
    folder.mkdir(parents=True, exist_ok=True)
    BertTokenizer(vocab={word: index for index, word in enumerate(words)}).save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(words), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=2 * hidden, max_position_embeddings=128)
    BertModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT folder; tests that need it skip without the `transformers` extra."""
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    return save_tiny_bert(tmp_path_factory.mktemp("models") / "tiny-bert")


TINY_SQUAD_STUDY = """# test study: reading comprehension on a few SQuAD dev questions (under the data root)
name: tiny_squad
task: reading_comprehension
data:
  name: squad
  local: {format: squad, files: {train: squad/dev-v1.1.json.gz}}
  carve: {validation: 0.1, test: 0.1}
  max_examples: {train: 64, validation: 32, test: 32}
  max_context_tokens: 80
metric: f1
budget: {trials: 1, max_epochs: 1}
space:
  char_encoder: none
  encoder: {choices: [bilstm], params: {bilstm: {hidden: 8, layers: 1}}}
  optimizer: adam
  batch_size: 16
  embedding_dim: 16
"""
