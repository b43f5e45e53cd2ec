"""The HTTP API (`hippograph serve`): LangServe routes for the chat and search graphs, plus REST.

    app = create_app()                      # services from settings
    uvicorn.run(app, host="127.0.0.1", port=8000)

Every request is authenticated by an API key (`Authorization: Bearer <key>` or `X-API-Key: <key>`) that maps to
one user; every read and write is scoped to the cubes that user may read or write. The caller's identity never
comes from the request body: the LangServe routes get it through `per_req_config_modifier`, which also namespaces
checkpoint thread ids per user (`thread_key`), so nobody can resume another user's thread.

Routes (all JSON; errors are `{"error": ..., "reason": ..., "status": ...}` with the right 4xx):

    /chat/invoke|batch|stream|stream_events|playground      LangServe, chat graph (checkpointed per user thread)
    /search/invoke|batch|stream|stream_events|playground    LangServe, search graph
    GET  /v1/me                                              the caller and the cubes they may use
    POST/GET /v1/users, DELETE /v1/users/{id}, POST /v1/users/{id}/keys   admin key (or an admin user)
    POST /v1/keys/revoke                                     revoke a key (your own, or any as admin)
    GET/POST /v1/cubes, DELETE /v1/cubes/{id}                cubes
    POST /v1/cubes/{id}/shares, DELETE /v1/cubes/{id}/shares/{user}   sharing, `read` or `write`
    POST/GET /v1/memories, GET/PATCH/DELETE /v1/memories/{id}, GET /v1/memories/{id}/history
    POST /v1/search, POST /v1/chat                           plain-JSON equivalents of the LangServe routes
    POST /v1/documents                                       ingest texts / conversations (ingest graph)
    GET  /v1/documents, DELETE /v1/documents?doc_key=...     list documents of a cube, archive one
    GET  /v1/jobs, GET /v1/jobs/{id}                         enrichment jobs of the caller's cubes
    POST /v1/jobs/{id}/retry                                 requeue a failed job
    GET  /v1/memories/{id}/edges                             edges of a memory (readable ends only)
    /ui                                                      the web inspector (hippograph.ui)
"""

from hippograph.api.app import create_app, serve

__all__ = ["create_app", "serve"]
