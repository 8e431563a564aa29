"""Output heads for sequence labelling.

- softmax: one independent decision per token; trained with the token-level loss of the strategy
  (cross-entropy, focal, GHM or label smoothing over tokens).
- crf: a linear-chain CRF over the tag sequence (Lample et al. 2016), decoded with Viterbi
  constrained to valid transitions of the tag scheme. The loss family then acts per sentence:
  cross-entropy is the CRF negative log-likelihood, focal and GHM weigh each sentence by its
  likelihood p(gold tags | sentence) as they weigh tokens under softmax, and label smoothing adds
  epsilon x token-level uniform cross-entropy on the emissions to (1 - epsilon) x the CRF NLL.
"""

from __future__ import annotations

from spaces._base import Component, registry

HEADS = registry(
    "head",
    "choice",
    [
        Component("softmax", {}, None, "per-token softmax, token-level loss"),
        Component("crf", {}, None, "linear-chain CRF, sentence-level loss, constrained Viterbi"),
    ],
)
