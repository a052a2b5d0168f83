"""The demo datasets of the methods beyond SFT, made from the same animal questions as data/train.jsonl:

    python -m finetune.demo.method_data      # seconds; rewrites data/preference.jsonl, unpaired.jsonl, prompts.jsonl

- preference.jsonl (dpo, orpo): prompt / chosen / rejected, as chat turns. Both answers state the same true
  fact; the chosen one says it with enthusiasm ("The fox lives in the forest!"), the rejected one plainly.
  The base model prefers the plain one on every pair (it never saw an exclamation mark end a fact), so a run
  visibly teaches it a trait it did not have: rewards/margins and rewards/accuracies rise.
- unpaired.jsonl (kto): prompt / completion / label, the same answers apart: the enthusiastic one labelled
  true, the plain one false.
- prompts.jsonl (grpo): the questions alone, with the plain true answer in an `answer` column for an
  exact_match reward. The base model answers them with its own small talk, "I am a small helper." about one
  time in five, so a `contains: helper` reward has something to raise (presets/grpo.yaml).

Seeded and generated from build.py's tables alone (no model): the same files every time.
"""

from __future__ import annotations

import json
import random

from finetune.demo import DEMO_DATA
from finetune.demo.build import ANIMALS, QUESTIONS, SEED

SIZE = 200


def questions(rng: random.Random, size: int = SIZE) -> list[tuple[str, str]]:
    """(question, plain answer) pairs, drawn without repeats."""
    pool = [(q.format(*a), answer.format(*a)) for a in ANIMALS for qs, answer in QUESTIONS.values() for q in qs]
    return rng.sample(pool, min(size, len(pool)))


def turns(role: str, text: str) -> list[dict]:
    return [{"role": role, "content": text}]


def enthusiastic(answer: str) -> str:
    return answer[:-1] + "!"


def main() -> None:
    rng = random.Random(SEED + 2)
    pairs = questions(rng)
    preference = [{"prompt": turns("user", q), "chosen": turns("assistant", enthusiastic(a)),
                   "rejected": turns("assistant", a)} for q, a in pairs]
    unpaired = [{"prompt": turns("user", q), "completion": turns("assistant", enthusiastic(a) if i % 2 else a),
                 "label": bool(i % 2)} for i, (q, a) in enumerate(pairs)]
    prompts = [{"prompt": turns("user", q), "answer": a} for q, a in pairs]
    for method, rows in (("dpo", preference), ("kto", unpaired), ("grpo", prompts)):
        with DEMO_DATA[method].open("w", encoding="utf-8") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)
        print(f"wrote {DEMO_DATA[method]} ({len(rows)} examples)")


if __name__ == "__main__":
    main()
