"""The downloader: parallel, resumable, verified file transfers over httpx.

What lives here: the entry points ([`api`][installer.edges.download.api]: `download_files`,
`download_files_settled`, `download_file`, `make_client`), one file's transfer across tries
([`transfer`][installer.edges.download.transfer]) and its server side
([`remote`][installer.edges.download.remote]), the policy checked before a fetch
([`policy`][installer.edges.download.policy]), retries ([`retry`][installer.edges.download.retry]),
tokens ([`auth`][installer.edges.download.auth]), names from URLs and headers
([`names`][installer.edges.download.names]), the files on disk
([`files`][installer.edges.download.files]) and progress bars
([`progress`][installer.edges.download.progress]). The request and result records live in
[`installer.core.downloads`][installer.core.downloads].
May import: [`installer.core`][installer.core] and the other edges; never the planner, the
features, the steps, the commands or the CLI.
"""
