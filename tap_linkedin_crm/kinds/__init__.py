"""Export kinds: one adapter per LinkedIn asynchronous export API."""
