"""Pure functions over e-mail messages: parsing, quotes, charsets; no database."""
