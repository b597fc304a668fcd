"""The course's data: a generated pretraining corpus and instruction task (both from a seed), and a
profile's fine-tuning data.

Everything happens in a small made-up world of people, each with a city, a job, a pet, a favourite
colour and a favourite food.

- The **pretraining corpus** (:func:`make_corpus`) is short stories: a few people are introduced fact by
  fact, in varied phrasings ("Mira lives in Oslo.", "The pet of Tom is a dog."), and some facts are
  mentioned again later ("Mira walked home through Oslo."). Predicting it well takes English-like
  syntax and knowing which words fill which slots: cities, jobs, pets, colours, foods.
- The **instruction task** (:func:`make_task_data`) asks, in a prompt-completion format the corpus never
  uses, what kind of fact a word of a story states::

      prompt:     "Text: Mira lives in Oslo. Tom has a dog.\nQuestion: Is Oslo a home, job, pet, colour or food?"
                  "\nAnswer:"
      completion: " home"

  The pretrained model knows the words (they fill different slots in its corpus) but not the format:
  it continues the story instead of answering, so its exact-match accuracy is zero. A LoRA fine-tune on
  the train split teaches the format and the mapping in under a minute on a CPU. That is the
  situation instruction tuning is for. Some words are never asked about in training
  (:func:`held_out_words`): the ``test_unseen`` split asks only about them, so it tells a fine-tune
  that learned the five kinds from one that memorised a word-to-answer table.

Same seed, same text: the generators use only :class:`random.Random` seeded by the caller.

:func:`load_task_data` gives a lesson its profile's data in one shape (``prompt``/``completion`` columns):
the generated course task, or a chat data set in Guanaco's format from the hub or a local folder.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from . import validate
from .loading import check_hub_access
from .profiles import Profile, is_hub_id, resolve_profile

__all__ = [
    "ATTRIBUTES",
    "KINDS",
    "Person",
    "make_world",
    "make_corpus",
    "make_task_examples",
    "make_task_data",
    "held_out_words",
    "format_example",
    "corpus_digest",
    "guanaco_to_prompt_completion",
    "load_task_data",
]

NAMES = (
    "Mira",
    "Tom",
    "Ana",
    "Leo",
    "Ines",
    "Omar",
    "Yuki",
    "Ravi",
    "Nora",
    "Ivan",
    "Lena",
    "Hugo",
    "Sara",
    "Paul",
    "Emma",
    "Noah",
    "Zoe",
    "Finn",
    "Maya",
    "Alex",
    "Ella",
    "Jonas",
    "Lara",
    "Felix",
    "Amir",
    "Chloe",
    "Diego",
    "Hana",
    "Karl",
    "Lucy",
    "Marco",
    "Nina",
    "Oscar",
    "Pia",
    "Rosa",
    "Sam",
    "Tara",
    "Ugo",
    "Vera",
    "Will",
    "Xena",
    "Yara",
    "Zane",
    "Ada",
    "Ben",
    "Cora",
    "Dan",
    "Eva",
    "Gus",
    "Iris",
    "Jack",
    "Kira",
    "Liam",
    "Mila",
    "Ned",
    "Olga",
    "Pedro",
    "Rita",
    "Seth",
    "Tina",
)
CITIES = (
    "Oslo",
    "Rome",
    "Lima",
    "Cairo",
    "Paris",
    "Delhi",
    "Tokyo",
    "Quito",
    "Dakar",
    "Lagos",
    "Seoul",
    "Porto",
    "Kyiv",
    "Accra",
    "Berlin",
    "Madrid",
    "Vienna",
    "Prague",
    "Dublin",
    "Nairobi",
    "Hanoi",
    "Manila",
    "Bogota",
    "Havana",
    "Athens",
    "Lisbon",
    "Sydney",
    "Boston",
    "Denver",
    "Toronto",
)
JOBS = (
    "baker",
    "nurse",
    "pilot",
    "farmer",
    "teacher",
    "painter",
    "doctor",
    "writer",
    "builder",
    "singer",
    "driver",
    "lawyer",
    "cook",
    "tailor",
    "dentist",
    "barber",
    "plumber",
    "miner",
    "sailor",
    "judge",
    "potter",
    "gardener",
    "banker",
    "chemist",
)
PETS = (
    "cat",
    "dog",
    "parrot",
    "rabbit",
    "turtle",
    "hamster",
    "goat",
    "pony",
    "lizard",
    "snake",
    "duck",
    "goose",
    "frog",
    "mouse",
    "ferret",
    "pig",
)
COLOURS = ("red", "blue", "green", "yellow", "purple", "orange", "pink", "brown", "black", "white", "grey", "gold")
FOODS = (
    "rice",
    "bread",
    "soup",
    "pasta",
    "cheese",
    "apples",
    "pears",
    "fish",
    "beans",
    "cake",
    "noodles",
    "eggs",
    "plums",
    "olives",
    "mangoes",
    "figs",
    "honey",
    "pizza",
)

ATTRIBUTES = {"city": CITIES, "job": JOBS, "pet": PETS, "colour": COLOURS, "food": FOODS}

# How the stories state each fact. The corpus uses all of them; the task's texts do too.
FACT_TEMPLATES = {
    "city": (
        "{n} lives in {v}.",
        "{n} has a home in {v}.",
        "The house of {n} is in {v}.",
        "{n} moved to {v} long ago.",
        "In {v} lives {n}.",
    ),
    "job": ("{n} works as a {v}.", "{n} is a {v}.", "By day {n} is a {v}.", "{n} earns a living as a {v}."),
    "pet": ("{n} has a {v}.", "{n} keeps a {v} at home.", "The pet of {n} is a {v}.", "{n} owns a small {v}."),
    "colour": ("{n} likes the colour {v}.", "The favourite colour of {n} is {v}.", "{n} loves all things {v}."),
    "food": (
        "{n} likes to eat {v}.",
        "{n} loves {v}.",
        "The favourite food of {n} is {v}.",
        "For dinner {n} always wants {v}.",
    ),
}
# Later sentences that use a fact stated earlier: the corpus's lesson in looking back.
RECALL_TEMPLATES = {
    "city": ("Later {n} walked home through {v}.", "{n} was happy to be back in {v}.", "Everyone in {v} knows {n}."),
    "job": ("Being a {v} keeps {n} busy.", "Today {n} was a tired {v}.", "{n} is a good {v}."),
    "pet": ("{n} fed the {v} before bed.", "The {v} followed {n} everywhere.", "{n} played with the {v}."),
    "colour": ("{n} painted the door {v}.", "{n} wore a {v} coat.", "{n} bought a {v} hat."),
    "food": ("{n} cooked {v} for friends.", "{n} shared the {v}.", "At noon {n} ate {v} again."),
}
FILLER = (
    "The day was warm.",
    "It rained all morning.",
    "The streets were quiet.",
    "The wind was cold.",
    "Nobody was in a hurry.",
    "The sun came out at last.",
    "Time went by.",
)
FRIENDS = ("{n} and {m} are friends.", "{n} met {m} at the market.", "{n} wrote a letter to {m}.")


@dataclass(frozen=True)
class Person:
    """One inhabitant of the world: a name and one value per attribute in :data:`ATTRIBUTES`."""

    name: str
    facts: dict


def make_world(rng: random.Random, n_people: int) -> list[Person]:
    """``n_people`` people with distinct names and random attribute values."""
    if not 1 <= n_people <= len(NAMES):
        raise ValueError(f"n_people must be between 1 and {len(NAMES)}, got {n_people}")
    names = rng.sample(NAMES, n_people)
    return [Person(n, {a: rng.choice(vals) for a, vals in ATTRIBUTES.items()}) for n in names]


def _fact_sentences(rng: random.Random, people: list[Person], attrs_per_person: tuple[int, int]):
    """Sentences stating a few facts per person, interleaved across people; also returns what was said."""
    told = []
    for p in people:
        k = rng.randint(*attrs_per_person)
        for a in rng.sample(list(ATTRIBUTES), k):
            told.append((p, a))
    rng.shuffle(told)
    sentences = [rng.choice(FACT_TEMPLATES[a]).format(n=p.name, v=p.facts[a]) for p, a in told]
    return sentences, told


def make_story(rng: random.Random) -> str:
    """One pretraining document: 2-4 people, their facts, then sentences that recall some of them."""
    people = make_world(rng, rng.randint(2, 4))
    sentences, told = _fact_sentences(rng, people, (1, 4))
    if rng.random() < 0.5:
        sentences.insert(rng.randrange(len(sentences) + 1), rng.choice(FILLER))
    if rng.random() < 0.3:
        n, m = rng.sample(people, 2)
        sentences.append(rng.choice(FRIENDS).format(n=n.name, m=m.name))
    for p, a in rng.sample(told, min(len(told), rng.randint(1, 3))):
        sentences.append(rng.choice(RECALL_TEMPLATES[a]).format(n=p.name, v=p.facts[a]))
    return " ".join(sentences)


def make_corpus(n_docs: int, seed: int = 0) -> list[str]:
    """``n_docs`` stories (strings, no special tokens), the same for the same ``seed``."""
    validate.positive_int(n_docs, "n_docs")
    rng = random.Random(f"corpus-{seed}")
    return [make_story(rng) for _ in range(n_docs)]


def corpus_digest(docs: list[str]) -> str:
    """SHA-256 (hex) of a list of documents, in order: a fingerprint that the model card stores so that a
    test can tell, without regenerating 60,000 stories, whether the generator still makes the same text."""
    import hashlib

    docs = validate.texts(docs, "docs", allow_empty=True)
    h = hashlib.sha256()
    for doc in docs:
        h.update(doc.encode("utf-8") + b"\x1e")
    return h.hexdigest()


# The answer of the task: which kind of fact a word states. Each answer is one token of the course
# tokenizer and a word the corpus uses ("home" is where a person lives).
KINDS = {"home": CITIES, "job": JOBS, "pet": PETS, "colour": COLOURS, "food": FOODS}


def format_example(text: str, word: str) -> str:
    """The task's prompt: a story, the question about one of its words and the cue ``Answer:``."""
    return f"Text: {text}\nQuestion: Is {word} a home, job, pet, colour or food?\nAnswer:"


def make_task_examples(
    n: int, seed: int = 0, words: set[str] | None = None, exclude: set[str] = frozenset()
) -> list[dict]:
    """``n`` distinct examples ``{"prompt", "completion", "word"}``; completions start with a space.

    Each prompt is a short story (1-2 people, 1-3 facts each, as in the corpus) and asks what kind of
    word one of its words is; the answer is one of the :data:`KINDS`: ``home``, ``job``, ``pet``,
    ``colour``, ``food``. ``words`` restricts the asked word to that set (the seen/unseen splits);
    prompts in ``exclude`` are skipped (no prompt in two splits).
    """
    validate.positive_int(n, "n")
    kind_of = {w: kind for kind, ws in KINDS.items() for w in ws}
    rng = random.Random(f"task-{seed}")
    out, seen = [], set(exclude)
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 100 * n:
            raise ValueError(f"could not make {n} distinct examples from the allowed words")
        group = make_world(rng, rng.randint(1, 2))
        sentences, told = _fact_sentences(rng, group, (1, 3))
        candidates = sorted({p.facts[a] for p, a in told})
        if words is not None:
            candidates = [w for w in candidates if w in words]
        if not candidates:
            continue
        kinds = sorted({kind_of[w] for w in candidates})
        kind = rng.choice(kinds)  # each kind about equally often, whatever the story mentions most
        word = rng.choice([w for w in candidates if kind_of[w] == kind])
        prompt = format_example(" ".join(sentences), word)
        if prompt in seen:
            continue
        seen.add(prompt)
        out.append({"prompt": prompt, "completion": " " + kind_of[word], "word": word})
    return out


def held_out_words(share: float = 0.18, seed: int = 0) -> set[str]:
    """The words the course task never asks about in training: ``share`` of each kind's words (at least
    one per kind), drawn with a seeded generator. They still occur in the pretraining corpus and in the
    training stories; only the question is never about them."""
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share < 1:
        raise ValueError(f"share must be a number between 0 and 1, got {validate.shown(share)}")
    rng = random.Random(f"held-out-{seed}")
    return {w for words in KINDS.values() for w in rng.sample(sorted(words), max(1, round(share * len(words))))}


def make_task_data(
    n_train: int = 2000,
    n_validation: int = 200,
    n_test: int = 200,
    seed: int = 0,
    n_test_unseen: int = 200,
    held_out_share: float = 0.18,
):
    """The course task as a ``datasets.DatasetDict`` with disjoint splits ``train``, ``validation``,
    ``test`` and ``test_unseen``.

    Columns: ``prompt`` (str), ``completion`` (str: a space and one word, the kind of fact) and ``word``
    (the word asked about). ``train``, ``validation`` and ``test`` ask only about words outside
    :func:`held_out_words` (``test`` measures new stories about words the fine-tune was asked about);
    ``test_unseen`` asks only about the held-out words, which no training question asks about (it
    measures whether the fine-tune learned the kinds, not a word lookup). No prompt appears twice, within
    or across splits. Prompt-completion is the format TRL's ``SFTTrainer`` trains with the loss on the
    completion only.
    """
    from datasets import Dataset, DatasetDict

    sizes = {"train": n_train, "validation": n_validation, "test": n_test, "test_unseen": n_test_unseen}
    if any(not isinstance(v, int) or v < 1 for v in sizes.values()):
        raise ValueError(f"split sizes must be positive integers, got {sizes}")
    unseen = held_out_words(held_out_share, seed)
    seen = {w for words in KINDS.values() for w in words} - unseen
    rows = make_task_examples(n_train + n_validation + n_test, seed=seed, words=seen)
    rows += make_task_examples(n_test_unseen, seed=seed, words=unseen, exclude={r["prompt"] for r in rows})
    out, start = {}, 0
    for split, size in sizes.items():
        out[split] = Dataset.from_list(rows[start : start + size])
        start += size
    return DatasetDict(out)


# --------------------------------------------------------------------------------------------------
# A profile's data: the generated course task, or Guanaco chats from the hub or a folder
# --------------------------------------------------------------------------------------------------


def guanaco_to_prompt_completion(text: str) -> dict:
    """Split an OASST1-Guanaco conversation (``### Human: ... ### Assistant: ...``) at its last
    assistant turn: everything up to and including ``### Assistant:`` is the prompt."""
    cue = "### Assistant:"
    i = text.rfind(cue)
    if i < 0:
        raise ValueError("not a Guanaco conversation: no '### Assistant:' turn")
    return {"prompt": text[: i + len(cue)], "completion": " " + text[i + len(cue) :].strip()}


def load_task_data(profile: Profile | str | None = None, seed: int = 0, **sizes):
    """The profile's data as a ``DatasetDict`` with ``train``, ``validation``, ``test`` and columns
    ``prompt`` and ``completion``. The course task is generated (``sizes`` go to
    :func:`make_task_data`); a hub data set (or a local folder) of Guanaco chats is loaded, converted with
    :func:`guanaco_to_prompt_completion` and split. A hub data set that is neither cached nor reachable
    raises :class:`qlora_course.loading.HubUnavailableError` at once."""
    profile = profile if isinstance(profile, Profile) else resolve_profile(profile)
    if profile.dataset is None:
        return make_task_data(seed=seed, **sizes)
    if is_hub_id(profile.dataset):
        check_hub_access(profile.dataset, repo_type="dataset")
    elif not Path(profile.dataset).expanduser().exists():
        raise ValueError(f"data set {profile.dataset!r} is neither a local folder nor a hub id ('org/name')")
    from datasets import DatasetDict, load_dataset

    raw = load_dataset(str(Path(profile.dataset).expanduser()) if not is_hub_id(profile.dataset) else profile.dataset)
    if "text" not in raw["train"].column_names:
        raise ValueError(f"{profile.dataset!r}: expected a 'text' column of Guanaco conversations")
    conv = raw.map(lambda row: guanaco_to_prompt_completion(row["text"]), remove_columns=raw["train"].column_names)
    split = conv["train"].train_test_split(test_size=0.05, seed=seed)
    test = conv["test"] if "test" in conv else split["test"]
    return DatasetDict(train=split["train"], validation=split["test"], test=test)
