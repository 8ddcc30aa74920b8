"""How mail arrives: the SMTP/LMTP listener and the IMAP poller. They spool; they decide nothing about tickets."""
