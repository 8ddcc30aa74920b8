"""Tickets, the domain: threading, applying mail to tickets. Never touches the network."""
