"""A2A errors: JSON-RPC error objects with A2A's codes, in both protocol versions."""

from __future__ import annotations

from support.a2a_check import agent_config, rpc


async def test_json_rpc_errors_carry_a2a_codes(make_gateway, upstream):
    client = await make_gateway(agent_config(upstream))
    a = {"A2A-Version": "1.0", "Authorization": "Bearer sk-a"}

    async def code(method, params=None, headers=a, path="/a2a/helper"):
        body = await rpc(client, path, method, params, headers=headers)
        assert body["jsonrpc"] == "2.0" and body["id"] == 7 and "result" not in body
        return body["error"]["code"]

    def message(*parts, role="ROLE_USER", **more):
        return {"messageId": "m1", "role": role, "parts": list(parts), **more}

    resp = await client.post("/a2a/helper", data=b"{nope", headers=a)
    body = await resp.json()
    assert resp.status == 200 and body["error"]["code"] == -32700 and body["id"] is None
    resp = await client.post("/a2a/helper", json=[{"jsonrpc": "2.0"}], headers=a)
    assert (await resp.json())["error"]["code"] == -32600
    resp = await client.post(
        "/a2a/helper", json={"jsonrpc": "1.0", "id": 1, "method": "GetTask"}, headers=a
    )
    assert (await resp.json())["error"]["code"] == -32600
    assert await code("tasks/list") == -32601
    assert await code("Nope") == -32601
    body = await rpc(client, "/a2a/helper", "SendMessage", {}, headers=a)
    assert body["error"]["code"] == -32602
    (info,) = body["error"]["data"]
    assert info["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    assert info["metadata"]["param"] == "message"
    assert (
        await code("SendMessage", {"message": message({"text": "hi"}, role="ROLE_AGENT")}) == -32602
    )
    assert await code("SendMessage", {"message": message()}) == -32602
    assert await code("SendMessage", {"message": message({"text": "a", "data": {}})}) == -32602
    pdf = {"url": "https://example.com/a.pdf", "mediaType": "application/pdf"}
    assert await code("SendMessage", {"message": message(pdf)}) == -32005
    only_pdf = {"acceptedOutputModes": ["application/pdf"]}
    assert (
        await code("SendMessage", {"message": message({"text": "hi"}), "configuration": only_pdf})
        == -32005
    )
    push = {"taskPushNotificationConfig": {"url": "https://example.com/hook"}}
    assert (
        await code("SendMessage", {"message": message({"text": "hi"}), "configuration": push})
        == -32003
    )
    assert await code("CreateTaskPushNotificationConfig", {"taskId": "t"}) == -32003
    assert await code("GetExtendedAgentCard") == -32007
    assert await code("GetTask", {"id": "missing"}) == -32001
    assert await code("GetTask", {"id": "missing", "historyLength": -1}) == -32602
    assert await code("GetTask", {"id": 5}) == -32602
    assert await code("ListTasks", {"pageSize": 500}) == -32602
    assert await code("ListTasks", {"pageToken": "garbage"}) == -32602
    assert await code("ListTasks", {"statusTimestampAfter": "yesterday"}) == -32602
    assert await code("GetTask", {"id": "x"}, headers={**a, "A2A-Version": "2.0"}) == -32009
    assert await code("tasks/get", {"id": "x"}, headers=a) == -32009  # 0.3 method, 1.0 header
    assert (
        await code(
            "SendMessage", {"message": message({"text": "x"})}, headers={**a, "A2A-Version": "0.3"}
        )
        == -32009
    )
    # a finished task takes no more messages
    done = await rpc(
        client, "/a2a/helper", "SendMessage", {"message": message({"text": "hi"})}, headers=a
    )
    task = done["result"]["task"]
    again = message({"text": "more"}, taskId=task["id"])
    assert await code("SendMessage", {"message": again}) == -32004
    assert await code("SendMessage", {"message": {**again, "contextId": "elsewhere"}}) == -32602
    assert await code("CancelTask", {"id": task["id"]}) == -32002
    # a key that may not use the agent
    assert (
        await code(
            "SendMessage",
            {"message": message({"text": "hi"})},
            headers={**a, "Authorization": "Bearer sk-c"},
        )
        == -32000
    )
    # 0.3 errors: the same codes, data as an object
    old = {"Authorization": "Bearer sk-a"}
    body = await rpc(client, "/a2a/helper", "tasks/get", {"id": "missing"}, headers=old)
    assert body["error"]["code"] == -32001 and body["error"]["data"]["reason"] == "TASK_NOT_FOUND"
    # without A2A-Version, 1.0 method names work too
    body = await rpc(client, "/a2a/helper", "GetTask", {"id": task["id"]}, headers=old)
    assert body["result"]["id"] == task["id"] and "kind" not in body["result"]
    body = await rpc(client, "/a2a/helper", "tasks/get", {"id": task["id"]}, headers=old)
    assert body["result"]["kind"] == "task" and body["result"]["status"]["state"] == "completed"
