"""What a user or a loop of notify does, one function each: a write opens its own unit of work
(commits before it returns, rolls back on any error) and makes no HTTP call inside it; a read
uses a session of its own. Routes and loops call these; the store below only reads and writes."""
