"""Writes word_problems.jsonl: the project's example set of short word problems with a running count.

    Ann has 7 pens. She buys 5. Then she loses 3. How many pens does Ann have?
    trace 7+5=12 12-3=9   answer 9

Difficulty is the number of changes to the count (1 to 3); counts start at 1-9, change by 1-5 and stay
within 0-12, so that the arithmetic is a small table and the task is reading and chaining. Prompts vary
in name, object and verb, so the model has to read words, not only digits; the answer is checked as a
number. Run from the
repository root:  python examples/word_problems/make_problems.py
"""

import json
import random
from pathlib import Path

NAMES = [("Ann", "She"), ("Bob", "He"), ("Cleo", "She"), ("Dev", "He"), ("Eva", "She"), ("Finn", "He"),
         ("Gus", "He"), ("Hana", "She"), ("Ivo", "He"), ("Jill", "She"), ("Kai", "He"), ("Lena", "She")]  # fmt: skip
THINGS = ["pens", "apples", "coins", "books", "shells", "stamps", "cards", "marbles", "cups", "rocks"]
GAIN = ["buys", "finds", "gets", "wins", "picks up"]
LOSS = ["loses", "gives away", "sells", "drops", "eats"]
MAX_START, MAX_CHANGE, MAX_COUNT = 9, 5, 12
PER_LEVEL = 800
SEED = 2026


def problem(rng: random.Random, steps: int) -> dict:
    name, pronoun = rng.choice(NAMES)
    things = rng.choice(THINGS)
    count = rng.randint(1, MAX_START)
    sentences, trace = [f"{name} has {count} {things}."], []
    for i in range(steps):
        change = rng.randint(1, MAX_CHANGE)
        lose = count + change > MAX_COUNT or (count >= change and rng.random() < 0.5)
        verb = rng.choice(LOSS if lose else GAIN)
        sentences.append(f"{'Then ' if i else ''}{pronoun.lower() if i else pronoun} {verb} {change}.")
        new = count - change if lose else count + change
        trace.append(f"{count}{'-' if lose else '+'}{change}={new}")
        count = new
    sentences.append(f"How many {things} does {name} have?")
    return {"prompt": " ".join(sentences), "trace": " ".join(trace), "answer": str(count), "difficulty": steps}


def main() -> None:
    rng = random.Random(SEED)
    rows, seen = [], set()
    for steps in (1, 2, 3):
        while sum(r["difficulty"] == steps for r in rows) < PER_LEVEL:
            row = problem(rng, steps)
            if row["prompt"] not in seen:  # distinct prompts, so that the held-out split is held out
                seen.add(row["prompt"])
                rows.append({"id": f"w{len(rows):04d}", **row})
    out = Path(__file__).with_name("word_problems.jsonl")
    out.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(f"{out}: {len(rows)} problems")


if __name__ == "__main__":
    main()
