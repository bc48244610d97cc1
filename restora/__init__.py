"""Restora's Python client: ``from restora.client import Client, AsyncClient, RestoraError``."""
from restora.client import AsyncClient, Client, Event, RestoraError

__all__ = ["AsyncClient", "Client", "Event", "RestoraError"]
