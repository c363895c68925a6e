"""What a partner's developer does with /openapi.json: the client openapi-python-client generated
from it, pip-installed as it came, pages through the demo partner's lines on the demo tenant and
revalidates a page with If-None-Match (304 must be a documented answer: the client raises on any
other). Run by scripts/check-reference in a scratch venv holding only that client.
Usage: generated_client.py BASE_URL TOKEN TENANT_ID"""
import sys
from uuid import UUID

from agent_api_partner_api_client import AuthenticatedClient
from agent_api_partner_api_client.api.caller_lines import list_caller_lines
from agent_api_partner_api_client.models import CallerLineList

base_url, token, tenant = sys.argv[1], sys.argv[2], UUID(sys.argv[3])
client = AuthenticatedClient(base_url=base_url, token=token, raise_on_unexpected_status=True)

ids, page = [], 1
while True:
    answer = list_caller_lines.sync_detailed(tenant, client=client, page=page, per_page=2)
    body = answer.parsed
    assert answer.status_code == 200 and isinstance(body, CallerLineList), answer.content
    assert body.meta.per_page == "2", body.meta.per_page
    ids += [line.id for line in body.data]
    if page >= body.meta.last_page:
        break
    page += 1
assert len(ids) == len(set(ids)) == body.meta.total, (ids, body.meta.total)

first = list_caller_lines.sync_detailed(tenant, client=client, page=1, per_page=2)
revalidating = client.with_headers({"If-None-Match": first.headers["etag"]})
again = list_caller_lines.sync_detailed(tenant, client=revalidating, page=1, per_page=2)
assert again.status_code == 304 and again.parsed is None, (again.status_code, again.content)
print(f"the generated client paged {len(ids)} lines in {page} pages, then revalidated one: 304")
