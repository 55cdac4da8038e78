"""The gateway's doors: one module per wire protocol a client already speaks.

Each door only translates: its protocol's request into the common `GatewayRequest`, through the
one pipeline entry (`routing.services.chat_stream`), and the common events back into its
protocol's answer and error shapes. Routing, guards, budgets, the response cache, the journal
and the request log are the pipeline's, the same for every door.
"""
