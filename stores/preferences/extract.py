"""Preference (and fact) extraction from conversation messages.

- `RuleExtractor`: no model. Finds explicit first-person preference statements ("I love ...", "I avoid ...",
  "I'm allergic to ...", "I have a strong aversion to ...", "... doesn't appeal to me") sentence by sentence,
  with polarity, the object the preference is about, a topic and the message id + quote as evidence.
- `LLMExtractor`: a chat model with structured output yields explicit *and* implicit preferences (inferred from
  choices across turns, each with evidence message ids and a short quote) and atomic facts for tree memory.
  Models without tool calling get the same schema as JSON instructions and their answer is parsed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, Literal

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import HumanMessage, SystemMessage
from pydantic import BaseModel, Field, ValidationError

from hippograph.stores.models import new_id
from hippograph.stores.preferences.base import Evidence, Preference, PreferenceKind


class Message(BaseModel):
    """A conversation message as enrichment jobs carry it."""

    id: str = Field(default_factory=new_id)
    role: str = "user"
    content: str = ""

    @property
    def is_user(self) -> bool:
        return self.role.lower() in ("user", "human")


def as_messages(raw: Sequence[Message | dict[str, Any]]) -> list[Message]:
    out = []
    for m in raw:
        if isinstance(m, Message):
            out.append(m)
        else:
            out.append(Message(id=str(m.get("id") or new_id()), role=str(m.get("role") or "user"),
                               content=str(m.get("content") or "")))
    return out


# -- rules ---------------------------------------------------------------------------------------------------

_ADV = (r"(?:(?:\w+ly|really|truly|just|also|much|very|always|generally|kind of|sort of|tend to|try to|"
        r"would|do|do not|never|no longer|still|cannot|will not|can only|can|must|quite|rather|"
        r"increasingly|now|mostly|only|even|am|have always|have never|have)\s+)*")
_NEG_VERBS = (r"hate|hates|dislike|despise|detest|loathe|abhor|avoid|refuse|steer clear of|stay away from|"
              r"cannot stand|cannot bear|cannot tolerate|cannot handle|cannot eat|cannot consume|cannot have|"
              r"shun|reject|object to|against|opposed|allergic|intolerant|sensitive|"
              r"not a fan|not into|not interested|uninterested|not keen|afraid|scared|terrified|wary|"
              r"uncomfortable|not comfortable|disinterested|tired of|sick of|fed up with|"
              r"have no (?:interest|desire|patience|time)|"
              r"have (?:a |an )?(?:\S+ ){0,3}(?:aversion|allergy|allergies|intolerance|dislike|distaste|"
              r"fear|phobia|sensitivity|hatred|disdain|discomfort|reluctance|objection|skin|stomach)s?|"
              r"suffer from|lactose|deathly|do not consume|need to avoid|have to avoid|must avoid|do not trust|"
              r"distrust|mistrust")
_POS_VERBS = (r"like|love|loves|enjoy|adore|prefer|favou?r|cherish|relish|appreciate|gravitate towards?|"
              r"(?:a |an )?(?:\S+ ){0,2}(?:fan|lover|enthusiast|devotee|vegan|vegetarian|pescatarian|"
              r"follower|collector|buff|aficionado)|into|passionate|interested|obsessed|keen|drawn|"
              r"have (?:a |an )?(?:\S+ ){0,3}(?:preference|passion|love|fondness|affinity|soft spot|"
              r"weakness|taste|penchant|liking|interest)s?|"
              r"(?:follow|adhere to|stick to|keep|maintain|am on|eat|live) (?:a |an )?(?:\S+ ){0,5}"
              r"(?:diet|lifestyle|regimen)|"
              r"learn best|work best|do best|thrive|rely on|swear by|stick to|stick with|exclusively \w+|"
              r"want to avoid|would rather|eat|drink|read|watch|listen to|play|wear|use|buy|"
              r"practice|practise|find|follow|purchase|consume|support|choose|opt for|go for|seek out|"
              r"look for|value|believe in|believe|committed to|prioriti[sz]e|\w+ about")
_PREF_RE = re.compile(
    rf"\bI\s+{_ADV}(?P<verb>{_NEG_VERBS}|{_POS_VERBS})\b(?P<object>.*)",
    re.IGNORECASE,
)
# "I have severe anxiety and avoid ...": the preference verb follows a conjunction, the subject is earlier.
_CONJ_RE = re.compile(
    r"\bI\b.*?\b(?:and|so|therefore|thus|which means I|so I)\s+(?:I\s+)?(?:\w+ly\s+|also\s+|always\s+|"
    r"never\s+|need to\s+|have to\s+|must\s+|try to\s+|do not\s+|cannot\s+)*"
    r"(?P<verb>avoid|refuse|prefer|dislike|hate|love|enjoy|tolerate|stay away from|steer clear of|"
    r"only (?:eat|use|buy|read|watch|wear|consume))\b(?P<object>.*)",
    re.IGNORECASE,
)
_CONTRACTIONS = [
    (re.compile(r"\bI['’]m\b", re.I), "I am"), (re.compile(r"\bI['’]ve\b", re.I), "I have"),
    (re.compile(r"\bI['’]d\b", re.I), "I would"), (re.compile(r"\bI['’]ll\b", re.I), "I will"),
    (re.compile(r"\b(?:can['’]t|can not)\b", re.I), "cannot"), (re.compile(r"\bwon['’]t\b", re.I), "will not"),
    (re.compile(r"\b(do|does|did|is|are|was|were|have|has|would|should|could)n['’]t\b", re.I), r"\1 not"),
    (re.compile(r"\bdont\b", re.I), "do not"), (re.compile(r"\bi\b"), "I"),
]


def normalise_contractions(text: str) -> str:
    for pattern, repl in _CONTRACTIONS:
        text = pattern.sub(repl, text)
    return text


# Statements that are preferences without an "I <verb>" shape.
_OTHER_RES = [
    (re.compile(r"\b(?:doesn't|does not|don't|do not|never) (?:really |quite |particularly )?"
                r"(?:appeal to|interest|suit|work for|agree with) me\b", re.I), -1),
    (re.compile(r"\b(?:appeals? to me|(?:is|are) (?:not )?my (?:thing|cup of tea|style)|not for me)\b", re.I),
     0),
    (re.compile(r"\bmy (?:favou?rite|go-to|preferred)\b", re.I), 1),
    (re.compile(r"\b(?:i'm|i am) (?:a )?(?:vegan|vegetarian|pescatarian|teetotal(?:er|ler)?|diabetic|"
                r"celiac|coeliac|allergic|lactose intolerant|gluten intolerant|sober)\b", re.I), -1),
    (re.compile(r"\bmy (?:doctor|dietitian|trainer) (?:told|advised|recommended)\b", re.I), -1),
]
# Verbs too generic to count alone: they need a negation or a limiting adverb to state a preference.
_WEAK_VERBS = {"eat", "drink", "read", "watch", "listen to", "play", "wear", "use", "buy", "practice",
               "practise", "find", "rely on", "follow", "purchase", "consume", "support", "choose", "opt for",
               "go for", "seek out", "look for", "value", "interested", "into", "keen", "drawn", "sensitive"}
_LIMITERS = re.compile(
    r"\b(?:never|only|always|exclusively|strictly|not|no longer|cannot|refuse|avoid|rarely|usually|mostly|"
    r"prefer|very|extremely|highly|really|particularly|especially|deeply|mainly|primarily|solely)\b", re.I)
_FIND_JUDGEMENT = re.compile(
    r"\bfind\b.*\b(?:ineffective|effective|boring|dull|tedious|overwhelming|distracting|annoying|"
    r"uncomfortable|unappealing|appealing|helpful|unhelpful|useless|relaxing|stressful|off-putting|"
    r"offensive|disturbing|unpleasant|pleasant|enjoyable|fun|engaging|unengaging|irritating|frustrating|"
    r"too|difficult|hard|disorienting|unsettling|overstimulating|triggering|draining|exhausting)\b", re.I)
_NEGATION = re.compile(r"\b(?:not|never|no longer|cannot|refuse|avoid|without)\b", re.I)
_NEG_VERB_RE = re.compile(rf"^(?:{_NEG_VERBS})$", re.I)
_HYPOTHETICAL = re.compile(r"^(?:if|when|whether|what if|suppose|imagine|would you|do you|can you|could you)\b",
                           re.I)
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?;])\s+|\n+")
_LEADING = re.compile(r"^(?:(?:also|and|but|so|well|honestly|actually|personally|plus|oh|btw|by the way|"
                      r"however|though|anyway|just so you know|fyi|for the record|to be honest)[,:]?\s+)+", re.I)

TOPICS: dict[str, tuple[str, ...]] = {
    "food": ("food", "eat", "diet", "vegan", "vegetarian", "meat", "fish", "seafood", "dairy", "gluten", "sugar",
             "spicy", "cuisine", "restaurant", "cook", "recipe", "dessert", "snack", "breakfast", "dinner",
             "lunch", "coffee", "tea", "caffeine", "alcohol", "wine", "beer", "drink", "peanut", "nut",
             "allerg", "organic", "keto", "meal", "chocolate", "fruit", "vegetable", "pescatarian", "lactose"),
    "music": ("music", "song", "band", "album", "concert", "jazz", "rock", "pop", "classical", "hip hop",
              "rap", "playlist", "genre", "singer", "opera", "podcast"),
    "books": ("book", "novel", "read", "author", "fiction", "graphic novel", "comic", "poetry", "literature",
              "audiobook", "e-book", "ebook"),
    "shows": ("movie", "film", "show", "series", "tv", "episode", "documentary", "cinema", "anime", "sitcom",
              "comedy", "horror", "thriller", "netflix", "streaming", "animated", "animation"),
    "games": ("game", "gaming", "video game", "board game", "console", "rpg", "multiplayer", "puzzle",
              "microtransaction"),
    "sports": ("sport", "football", "soccer", "basketball", "tennis", "golf", "baseball", "hockey", "racing",
               "swimming", "skiing", "match", "team", "stadium", "olympic", "betting"),
    "fitness": ("fitness", "workout", "exercise", "gym", "running", "yoga", "cardio", "training", "weights",
                "cycling", "hiking", "pilates", "wearable", "tracker"),
    "health": ("health", "medicine", "medication", "doctor", "therapy", "holistic", "supplement", "pain",
               "allergy", "condition", "treatment", "sleep", "stress", "mental", "remedy", "remedies"),
    "beauty": ("beauty", "makeup", "skin", "skincare", "hair", "cosmetic", "fragrance", "perfume", "nail",
               "cleanser", "moisturizer", "brand", "sulfate", "paraben", "fashion", "clothes", "clothing"),
    "education": ("learn", "study", "course", "class", "school", "education", "teacher", "tutor", "lecture",
                  "textbook", "flashcard", "online learning", "university", "classroom", "homework"),
    "travel": ("travel", "trip", "flight", "hotel", "vacation", "holiday", "destination", "tour", "cruise",
               "beach", "camping"),
    "work": ("work", "job", "career", "office", "meeting", "remote", "colleague", "manager", "team-building"),
}


def guess_topic(text: str) -> str:
    lowered = text.lower()
    best, best_hits = "general", 0
    for topic, words in TOPICS.items():
        hits = sum(1 for w in words if w in lowered)
        if hits > best_hits:
            best, best_hits = topic, hits
    return best


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_SPLIT.split(text) if s and s.strip()]


def _clean_object(obj: str) -> str:
    obj = re.sub(r"^\s*(?:to|of|for|with|about|on|in|towards?)\s+", "", obj.strip(), flags=re.I)
    obj = re.split(r"\s*(?:[,;.!?]|\bbecause\b|\bdue to\b|\bsince\b|\bas I\b)\s*", obj, maxsplit=1)[0]
    return obj.strip()[:200]


class RuleMatch(BaseModel):
    sentence: str
    polarity: int
    object: str
    verb: str


def match_preference(sentence: str) -> RuleMatch | None:
    """The preference a single sentence states, if it states one in first person."""
    s = _LEADING.sub("", normalise_contractions(sentence.strip().strip('"“”').strip()))
    if not s or s.endswith("?") or _HYPOTHETICAL.match(s) or len(s) > 600:
        return None
    match = _PREF_RE.search(s) or _CONJ_RE.search(s)
    if match is not None:
        verb = match.group("verb").lower()
        head = s[: match.start("verb")]
        obj = match.group("object")
        if verb in ("like", "love") and re.search(r"\bwould\s+(?:\w+ly\s+)?$", s[: match.start("verb")], re.I):
            match = None  # "I would like you to ..." is a request, not a preference
        elif verb in _WEAK_VERBS or verb.startswith("find"):
            if verb.startswith("find"):
                if not _FIND_JUDGEMENT.search(s):
                    match = None
            elif not _LIMITERS.search(head + " " + obj[:40]):
                match = None
        if match is not None:
            negative = bool(_NEG_VERB_RE.match(verb)) or verb in ("avoid", "refuse")
            if _NEGATION.search(head[-40:]) and not negative:
                negative = True
            elif _NEGATION.search(head[-40:]) and negative and verb not in ("avoid", "refuse"):
                negative = False  # "I don't hate ..." / "I'm not afraid of ..."
            if verb.startswith("find"):
                negative = bool(re.search(r"\b(?:in|un)\w+|boring|dull|tedious|overwhelming|distracting|"
                                          r"annoying|useless|stressful|off-putting|offensive|disturbing|"
                                          r"irritating|frustrating|too\b", obj, re.I))
            return RuleMatch(sentence=s, polarity=-1 if negative else 1, object=_clean_object(obj), verb=verb)
    for pattern, polarity in _OTHER_RES:
        m = pattern.search(s)
        if m is not None:
            if polarity == 0:
                polarity = -1 if _NEGATION.search(s[: m.end()]) else 1
            obj = _clean_object(s[: m.start()] if m.start() > 3 else s[m.end():])
            return RuleMatch(sentence=s, polarity=polarity, object=obj, verb=m.group(0).lower())
    return None


_CHOICE = re.compile(r"\b(?:go with|choose|pick|take|prefer|like|select|opt for)\s+(?:the\s+)?"
                     r"(?:option\s*#?\s*(?P<num>\d)|(?P<ord>first|second|third|fourth|fifth|last)\s+(?:one|option))",
                     re.I)
_ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5}
_OPTION_LINE = re.compile(r"^\s*(?:option\s*)?(\d)[.):]\s+(.+)$", re.I | re.M)


def implicit_choice(previous: Message | None, message: Message, *, user_id: str, cube_id: str
                    ) -> Preference | None:
    """An implicit preference from a choice: the user picks option N of a numbered list the assistant gave."""
    if previous is None or previous.is_user:
        return None
    found = _CHOICE.search(message.content)
    if found is None:
        return None
    options = {int(n): text.strip() for n, text in _OPTION_LINE.findall(previous.content)}
    if not options:
        return None
    if found.group("num"):
        choice = int(found.group("num"))
    else:
        word = found.group("ord").lower()
        choice = max(options) if word == "last" else _ORDINALS[word]
    if choice not in options:
        return None
    text = f"I prefer this kind of option: {options[choice]}"[:400]
    quote = message.content[max(0, found.start() - 40): found.end() + 80]
    return Preference(
        user_id=user_id, cube_id=cube_id, kind=PreferenceKind.IMPLICIT, topic=guess_topic(options[choice]), text=text,
        evidence=[Evidence(message_id=previous.id, quote=options[choice][:200]),
                  Evidence(message_id=message.id, quote=quote[:200])],
        metadata={"polarity": 1, "object": options[choice][:200], "source": "rules:choice"},
    )


class RuleExtractor:
    """Explicit first-person preference statements (and choices among listed options), by rules (no model)."""

    max_chars = 400

    def extract(self, messages: Sequence[Message | dict[str, Any]], *, user_id: str, cube_id: str
                ) -> list[Preference]:
        prefs: list[Preference] = []
        previous: Message | None = None
        for message in as_messages(messages):
            before, previous = previous, message
            if not message.is_user or not message.content.strip():
                continue
            chosen = implicit_choice(before, message, user_id=user_id, cube_id=cube_id)
            if chosen is not None:
                prefs.append(chosen)
            for sentence in split_sentences(message.content):
                found = match_preference(sentence)
                if found is None:
                    continue
                text = found.sentence[: self.max_chars]
                prefs.append(Preference(
                    user_id=user_id, cube_id=cube_id, kind=PreferenceKind.EXPLICIT, topic=guess_topic(text),
                    text=text, evidence=[Evidence(message_id=message.id, quote=text[:200])],
                    metadata={"polarity": found.polarity, "object": found.object, "source": "rules"},
                ))
        return prefs


def extract_facts_by_rules(messages: Sequence[Message | dict[str, Any]], *, min_words: int = 4
                           ) -> list[tuple[str, str]]:
    """(message id, sentence) for each declarative user sentence worth keeping as an atomic fact."""
    out: list[tuple[str, str]] = []
    for message in as_messages(messages):
        if not message.is_user:
            continue
        sentences = [part for clause in split_sentences(message.content)
                     for part in re.split(r",?\s+and (?=I\b)|;\s*", clause)]
        for sentence in sentences:
            s = _LEADING.sub("", sentence).strip()
            if len(s.split()) < min_words or s.endswith("?") or _HYPOTHETICAL.match(s):
                continue
            if re.match(r"^(?:hi|hello|hey|thanks|thank you|ok|okay|great|cool|sure|yes|no)\b", s, re.I) \
                    and len(s.split()) < 8:
                continue
            out.append((message.id, s[:1000]))
    return out


# -- LLM ---------------------------------------------------------------------------------------------------


class ExtractedPreference(BaseModel):
    kind: Literal["explicit", "implicit"] = Field(
        description="explicit: the user stated it; implicit: inferred from the user's choices or behaviour")
    text: str = Field(description="the preference as one first-person sentence, e.g. 'I avoid dairy'")
    topic: str = Field(default="general", description="one word: food, music, books, shows, games, sports, "
                                                      "fitness, health, beauty, education, travel, work, general")
    polarity: int = Field(default=1, description="1 likes/wants, -1 dislikes/avoids")
    evidence_message_ids: list[str] = Field(default_factory=list, description="ids of the supporting messages")
    quote: str = Field(default="", description="a short verbatim quote from the user that supports it")


class ExtractedFact(BaseModel):
    text: str = Field(description="one self-contained fact about the user or their world, third person")
    message_ids: list[str] = Field(default_factory=list)


class TurnExtraction(BaseModel):
    """Atomic facts and preferences found in a conversation turn."""

    facts: list[ExtractedFact] = Field(default_factory=list)
    preferences: list[ExtractedPreference] = Field(default_factory=list)


EXTRACTION_SYSTEM = (
    "You extract long-term memory from a conversation between a user and an assistant.\n"
    "Return atomic FACTS worth remembering about the user (self-contained, no pronouns without referents) and "
    "the user's PREFERENCES: explicit ones the user states, and implicit ones you can infer from the user's "
    "choices across turns (for example always picking the in-person option). Every preference cites the ids of "
    "the messages that support it and a short verbatim quote. Do not invent preferences without evidence."
)


def _format_messages(messages: Sequence[Message]) -> str:
    return "\n".join(f"[{m.id}] {m.role}: {m.content}" for m in messages)


def _supports_tools(model: BaseChatModel) -> bool:
    return type(model).bind_tools is not BaseChatModel.bind_tools


class LLMExtractor:
    """Facts + explicit/implicit preferences from a chat model's structured output."""

    def __init__(self, model: BaseChatModel) -> None:
        self.model = model

    def prompt(self, messages: Sequence[Message], *, json_instructions: bool) -> list[Any]:
        system = EXTRACTION_SYSTEM
        if json_instructions:
            system += ("\nAnswer with one JSON object only, matching this JSON schema:\n"
                       + json.dumps(TurnExtraction.model_json_schema()))
        return [SystemMessage(content=system),
                HumanMessage(content="Conversation (message ids in brackets):\n" + _format_messages(messages))]

    def extract_turn(self, messages: Sequence[Message | dict[str, Any]]) -> TurnExtraction:
        msgs = as_messages(messages)
        if _supports_tools(self.model):
            try:
                structured = self.model.with_structured_output(TurnExtraction)
                result = structured.invoke(self.prompt(msgs, json_instructions=False))
                if isinstance(result, TurnExtraction):
                    return result
                return TurnExtraction.model_validate(result)
            except NotImplementedError:
                pass
        reply = self.model.invoke(self.prompt(msgs, json_instructions=True))
        return parse_extraction(str(reply.content))

    def extract(self, messages: Sequence[Message | dict[str, Any]], *, user_id: str, cube_id: str
                ) -> list[Preference]:
        msgs = as_messages(messages)
        return preferences_from(self.extract_turn(msgs), msgs, user_id=user_id, cube_id=cube_id)


def parse_extraction(text: str) -> TurnExtraction:
    """The JSON object in a model's reply (code fences and chatter around it tolerated)."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return TurnExtraction()
    try:
        return TurnExtraction.model_validate(json.loads(text[start : end + 1]))
    except (json.JSONDecodeError, ValidationError):
        return TurnExtraction()


def preferences_from(result: TurnExtraction, messages: Sequence[Message], *, user_id: str, cube_id: str
                     ) -> list[Preference]:
    """Turn extracted preferences into `Preference`s, keeping only evidence that names real messages."""
    known = {m.id for m in messages}
    prefs = []
    for p in result.preferences:
        if not p.text.strip():
            continue
        ids = [i for i in p.evidence_message_ids if i in known]
        if not ids:
            users = [m.id for m in messages if m.is_user]
            ids = users[-1:] if users else []
        if not ids:
            continue
        prefs.append(Preference(
            user_id=user_id, cube_id=cube_id,
            kind=PreferenceKind.IMPLICIT if p.kind == "implicit" else PreferenceKind.EXPLICIT,
            topic=(p.topic or guess_topic(p.text))[:64], text=p.text.strip()[:1000],
            evidence=[Evidence(message_id=i, quote=p.quote[:200]) for i in ids],
            metadata={"polarity": -1 if p.polarity < 0 else 1, "object": _object_of(p.text), "source": "llm"},
        ))
    return prefs


def _object_of(text: str) -> str:
    found = match_preference(text)
    return found.object if found else text[:200]
