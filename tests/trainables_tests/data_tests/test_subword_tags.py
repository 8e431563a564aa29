"""NER on sub-words (trainables.data.subword_tags): word tags at first sub-tokens, predictions back to words."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from trainables.data.subword_tags import IGNORE_INDEX, first_subtokens, subtoken_labels, word_predictions

WORDS = ["John", "Smiths", "met", "Mary", "in", "towns", "."]
TAGS = np.array([1, 2, 0, 1, 0, 3, 0])  # B-PER I-PER O B-PER O B-LOC O


def test_each_word_tag_sits_at_its_first_sub_token_and_the_others_are_masked(tiny_bert: Path) -> None:
    from transformers import AutoTokenizer

    encoding = AutoTokenizer.from_pretrained(tiny_bert)(WORDS, is_split_into_words=True)
    pieces = encoding.tokens()
    assert pieces == ["[CLS]", "john", "smith", "##s", "met", "mary", "in", "town", "##s", ".", "[SEP]"]
    first = first_subtokens(encoding.word_ids(), len(WORDS))
    assert first.tolist() == [1, 2, 4, 5, 6, 7, 9]
    labels = subtoken_labels(first, TAGS, len(pieces))
    assert labels.tolist() == [IGNORE_INDEX, 1, 2, IGNORE_INDEX, 0, 1, 0, 3, IGNORE_INDEX, 0, IGNORE_INDEX]


def test_words_cut_by_the_length_limit_are_predicted_o_and_every_word_keeps_a_prediction(tiny_bert: Path) -> None:
    from transformers import AutoTokenizer

    encoding = AutoTokenizer.from_pretrained(tiny_bert)(WORDS, is_split_into_words=True, truncation=True, max_length=6)
    first = first_subtokens(encoding.word_ids(), len(WORDS))
    assert first.tolist() == [1, 2, 4, -1, -1, -1, -1]  # [CLS] john smith ##s met [SEP]
    predicted = word_predictions(np.array([1, 2, 0, 9, 9]), first, fill=0)  # padding past the kept words is ignored
    assert predicted.tolist() == [1, 2, 0, 0, 0, 0, 0] and len(predicted) == len(WORDS)


def test_a_words_prediction_is_its_first_sub_tokens(tiny_bert: Path) -> None:
    """The tagger reads each word's scores at its first sub-token: predicting from the sub-token
    scores there and mapping back gives one prediction per word."""
    from spaces import Strategy
    from trainables.data.subwords import PretrainedModel
    from trainables.pretrained import build_token_tagger

    config = {
        "char_encoder": {"name": "none"}, "encoder": {"name": "transformer", "transformer": {"model": "tiny"}},
        "finetune": {"name": "full", "full": {"head_lr_multiplier": 1.0, "layer_decay": 1.0, "freeze_embeddings": False, "freeze_layers": 0, "accumulation": 1}},
        "addons": {}, "head": {"name": "softmax"}, "loss": {"name": "cross_entropy"}, "regularizers": {},
        "optimizer": {"name": "adam", "adam": {"lr": 0.001}}, "schedule": {"name": "constant"}, "train": {"batch_size": 2}, "model": {"embedding_dim": 8},
    }
    tags = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    torch.manual_seed(0)
    tagger = build_token_tagger(Strategy.from_config(config), PretrainedModel("tiny", str(tiny_bert), 0), tags, "iob2").eval()
    ids = torch.tensor([[2, 10, 11, 12, 13, 14, 15, 16, 17, 18, 3]])
    mask = torch.ones_like(ids, dtype=torch.bool)
    first = np.array([1, 2, 4, 5, 6, 7, 9])
    with torch.no_grad():
        subtoken_scores = tagger.network(input_ids=ids, attention_mask=mask.long()).logits[0]
        word_scores = tagger(ids, mask, torch.from_numpy(first).long()[None])[0]
    torch.testing.assert_close(word_scores, subtoken_scores[first])
    words = word_predictions(tagger.decode(word_scores[None], torch.ones(1, 7, dtype=torch.bool))[0].numpy(), first, fill=0)
    assert words.tolist() == subtoken_scores.argmax(-1)[first].tolist()
