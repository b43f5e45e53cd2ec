"""A scripted fake chat model: the only fake allowed (it stands in for a remote LLM)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field


class ScriptedChatModel(BaseChatModel):
    """Replies from a script and records every prompt it receives, so tests can assert on prompts."""

    replies: list[str]
    check: Callable[[list[BaseMessage]], None] | None = None
    prompts: list[list[BaseMessage]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted-fake"

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.prompts.append(list(messages))
        if self.check is not None:
            self.check(messages)
        if not self.replies:
            raise AssertionError("the scripted chat model ran out of replies")
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=self.replies.pop(0)))])
