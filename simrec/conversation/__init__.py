"""Conversational users: simulated people who talk to a conversational recommender (CRS) to
find an item they have in mind, for evaluating CRSs and for dialogue corpora
(:func:`converse`)."""

from simrec.conversation.builtin import BuiltinCRS
from simrec.conversation.crs import make_crs
from simrec.conversation.dialogue import ConversationalRecommender, Dialogue, Reply, Turn
from simrec.conversation.facts import Fact, ItemFacts
from simrec.conversation.run import ConverseResult, converse
from simrec.conversation.users import AgendaUser

__all__ = [
    "AgendaUser",
    "BuiltinCRS",
    "ConversationalRecommender",
    "ConverseResult",
    "Dialogue",
    "Fact",
    "ItemFacts",
    "Reply",
    "Turn",
    "converse",
    "make_crs",
]
