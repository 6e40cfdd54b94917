"""A deterministic synthetic RAOP sample in the Kaggle `train.json` format.

The bundled `data/sample.json` is written by `python -m core sample`; it lets the product run
on a fresh machine without the real data. Requests are made up from templates, with the
kinds of signal the RAOP paper found (need, gratitude, reciprocity, requester history).
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

SEED = 2014
START = 1_297_722_537  # first request in the Kaggle file (Feb 2011)
SPAN = 84_000_000  # about 2.7 years

PLACES = [
    "Ohio",
    "Texas",
    "Seattle",
    "Chicago",
    "London",
    "Toronto",
    "Florida",
    "Denver",
    "Boston",
    "Arizona",
    "Georgia",
    "Oregon",
    "NYC",
    "Michigan",
    "Sydney",
]
NEEDS = [  # (sentence, log-odds push)
    ("I just lost my job and rent took everything I had.", 0.7),
    ("Payday is Friday but the fridge is empty until then.", 0.6),
    ("My kids have been eating ramen all week and I would love to surprise them.", 0.8),
    ("I'm a broke college student living on noodles during finals.", 0.3),
    ("My car broke down and the repair ate my grocery money.", 0.5),
    ("Our family has had a rough month after medical bills.", 0.6),
    ("I'm craving pizza and feeling lazy tonight.", -0.9),
    ("It's my birthday and I'm home alone.", 0.1),
    ("Just moved into a new apartment and haven't been paid yet.", 0.4),
    ("My wife and I are both between jobs right now.", 0.6),
    ("Bored at work and pizza sounds amazing.", -1.0),
    ("Watching the game with friends and we're out of snacks.", -0.7),
]
EXTRAS = [
    ("I promise to pay it forward as soon as I get back on my feet.", 0.5),
    ("I can send a picture of my empty fridge if that helps.", 0.6),
    ("Thank you so much for reading, whatever happens.", 0.4),
    ("Any size, any toppings, I'm not picky at all.", 0.1),
    ("I have been a lurker here for a while.", 0.0),
    ("Please, I really need this.", -0.2),
    ("Pizza would make my whole week.", 0.0),
    ("lol", -0.6),
    ("I'll gladly return the favor to someone else next month.", 0.5),
    ("Edit: my address is verified, happy to show my ID.", 0.3),
]
TITLES = ["[Request] {place}, {hook}", "[REQUEST] {hook} - {place}", "[Request] {hook}"]
HOOKS = [
    "hungry family could use a pizza",
    "out of work and out of food",
    "student needs a pie",
    "would love a pizza tonight",
    "rough week, anything helps",
    "first request here",
    "craving pizza",
    "payday is far away",
    "kids would be thrilled",
]
SUBREDDITS = [
    "AskReddit",
    "pics",
    "funny",
    "gaming",
    "Random_Acts_Of_Pizza",
    "IAmA",
    "food",
    "todayilearned",
    "WTF",
    "videos",
    "worldnews",
    "Assistance",
]


def _request(rng: random.Random, index: int) -> dict[str, Any]:
    need, push = rng.choice(NEEDS)
    extras = rng.sample(EXTRAS, k=rng.randint(0, 3))
    push += sum(e[1] for e in extras)
    text = " ".join([need, *(e[0] for e in extras)])
    if rng.random() < 0.08:
        text = ""  # some requests put everything in the title
    age = rng.expovariate(1 / 300) if rng.random() > 0.1 else 0.0
    comments = int(rng.expovariate(1 / 80) * (age > 1))
    posts = int(rng.expovariate(1 / 15) * (age > 1))
    raop_posts = int(rng.random() < 0.1)
    karma_total = int(rng.expovariate(1 / 900) * (age > 1))
    karma = int(karma_total * rng.uniform(0.3, 1.0))
    stamp = START + int(SPAN * index / 400 + rng.uniform(-2e5, 2e5))
    push += 0.25 * math.log1p(age / 30) + 0.15 * math.log1p(comments / 10)
    push += 0.6 * raop_posts - 0.4 * (stamp - START) / SPAN
    received = rng.random() < 1 / (1 + math.exp(-(2.2 * push - 3.2)))
    subs = rng.sample(SUBREDDITS, k=min(len(SUBREDDITS), int(rng.expovariate(1 / 6))))
    title = rng.choice(TITLES).format(place=rng.choice(PLACES), hook=rng.choice(HOOKS))
    edited = received and rng.random() < 0.3
    return {
        "giver_username_if_known": f"giver_{rng.randrange(10**6):06d}"
        if received and rng.random() < 0.3
        else "N/A",
        "number_of_downvotes_of_request_at_retrieval": rng.randint(0, 5),
        "number_of_upvotes_of_request_at_retrieval": rng.randint(0, 12),
        "post_was_edited": edited,
        "request_id": f"t3_s{index:04d}",
        "request_number_of_comments_at_retrieval": rng.randint(0, 20),
        "request_text": text + ("\n\nEDIT: Thank you so much, pizza received!" if edited else ""),
        "request_text_edit_aware": text,
        "request_title": title,
        "requester_account_age_in_days_at_request": round(age, 6),
        "requester_account_age_in_days_at_retrieval": round(age + 600, 6),
        "requester_days_since_first_post_on_raop_at_request": 0.0
        if not raop_posts
        else round(rng.uniform(1, 200), 6),
        "requester_days_since_first_post_on_raop_at_retrieval": round(rng.uniform(0, 800), 6),
        "requester_number_of_comments_at_request": comments,
        "requester_number_of_comments_at_retrieval": comments + rng.randint(0, 400),
        "requester_number_of_comments_in_raop_at_request": rng.randint(0, 3) * raop_posts,
        "requester_number_of_comments_in_raop_at_retrieval": rng.randint(0, 6),
        "requester_number_of_posts_at_request": posts,
        "requester_number_of_posts_at_retrieval": posts + rng.randint(0, 30),
        "requester_number_of_posts_on_raop_at_request": raop_posts,
        "requester_number_of_posts_on_raop_at_retrieval": raop_posts + 1,
        "requester_number_of_subreddits_at_request": len(subs),
        "requester_received_pizza": received,
        "requester_subreddits_at_request": sorted(subs),
        "requester_upvotes_minus_downvotes_at_request": karma,
        "requester_upvotes_minus_downvotes_at_retrieval": karma + rng.randint(0, 3000),
        "requester_upvotes_plus_downvotes_at_request": karma_total,
        "requester_upvotes_plus_downvotes_at_retrieval": karma_total + rng.randint(0, 6000),
        "requester_user_flair": "shroom" if received and rng.random() < 0.8 else None,
        "requester_username": f"sample_user_{index:04d}",
        "unix_timestamp_of_request": float(stamp + 3600 * rng.choice([-5, -6, -7, -8])),
        "unix_timestamp_of_request_utc": float(stamp),
    }


def generate(rows: int = 400, seed: int = SEED) -> list[dict[str, Any]]:
    """`rows` synthetic requests; the same arguments always give the same records."""
    rng = random.Random(seed)
    return [_request(rng, i) for i in range(rows)]


def write_sample(path: Path, rows: int = 400, seed: int = SEED) -> Path:
    """Write the sample as a Kaggle-style JSON list (stable formatting)."""
    from core.safefile import write_output

    text = json.dumps(generate(rows, seed), indent=1, sort_keys=True) + "\n"
    return write_output(path, lambda handle: handle.write(text.encode()))
