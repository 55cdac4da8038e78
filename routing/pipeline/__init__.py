"""The request path's phases, in the order a request meets them: `admission` (everything before
the first upstream byte: the route from `route`, the guards, the first budget hold), the answer
(`cache` for a response-cache hit, else `execution` walking the chain, wired up and closed by
`answer`), and the `ledger` (cost, settlement and the terminal `Finished` or `Failed`), whose
writes `closing` groups and `journal` covers. `events` is the contract every entry point speaks;
`routing.services.chat_stream` runs the phases."""
