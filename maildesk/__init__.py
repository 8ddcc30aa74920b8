"""maildesk: a mail processing daemon that turns a support mailbox into a ticket desk."""

__version__ = "0.1.0"
