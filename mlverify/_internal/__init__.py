"""mlverify's machinery. Nothing here is a public interface: import from ``mlverify``."""
