"""The built-in demo: a short conversation this project wrote, and three questions about it."""

from __future__ import annotations

DEMO_USER = "demo"
DEMO_SESSION = "demo-session-1"

#: A made-up conversation (written for hippograph; no dataset involved).
CONVERSATION: list[dict[str, str]] = [
    {"role": "user", "content": "Hi! I'm Maya, I work as a marine biologist in Lisbon."},
    {"role": "assistant", "content": "Nice to meet you, Maya. What are you working on these days?"},
    {"role": "user", "content": "I'm studying how octopuses use tools along the Portuguese coast."},
    {"role": "user", "content": "I'm vegetarian, so please never suggest fish or meat recipes."},
    {"role": "user", "content": "My sister Inês is getting married in Porto on June 14th."},
    {"role": "user", "content": "I started learning the cello in January and practise every evening."},
    {"role": "assistant", "content": "That's lovely. How is the cello going?"},
    {"role": "user", "content": "Slowly! My teacher Rui says my bow hold is finally improving."},
    {"role": "user", "content": "My dog Farol is a three-year-old border collie who loves the beach."},
]

QUESTIONS: list[str] = [
    "What does Maya do for work?",
    "When and where is the wedding?",
    "What instrument am I learning, and who teaches me?",
]
