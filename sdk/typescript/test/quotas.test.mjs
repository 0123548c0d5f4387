// client.quotas: the caller's windows, dry-run checks, and the team and enterprise routes.
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { Conflict, Forbidden } from "../dist/index.js";
import { TAG, client, task } from "./live.mjs";

describe("user quotas", () => {
  test("getStatus() is the caller's own windows, charged by its tasks", async () => {
    const other = client("other");
    const before = await other.quotas.getStatus();
    assert.equal(before.userId, `other-${TAG}`);
    for (const period of ["daily", "weekly", "monthly"]) {
      const window = before[period];
      assert.equal(window.agentsRemaining, window.agentsLimit - window.agentsUsed);
      assert.ok(!Number.isNaN(Date.parse(window.resetTime)));
    }
    const { agentCalls } = await other.execute(task([1, 2, 3]));
    const afterwards = await other.quotas.getStatus();
    assert.equal(afterwards.daily.agentsUsed, before.daily.agentsUsed + agentCalls);
    assert.equal(afterwards.daily.agentsRemaining, before.daily.agentsRemaining - agentCalls);
    assert.deepEqual(await other.quotas.getStatus(`other-${TAG}`), afterwards);
  });

  test("check is a dry run; another user's status is refused", async () => {
    const other = client("other");
    const before = await other.quotas.getStatus();
    const used = before.daily.agentsUsed;
    const yes = await other.quotas.check(`other-${TAG}`, 5, "session-123");
    assert.equal(yes.allowed, true);
    assert.equal(typeof yes.reason, "string");
    const no = await other.quotas.check(`other-${TAG}`, before.daily.agentsRemaining + 1);
    assert.equal(no.allowed, false);
    assert.equal((await other.quotas.getStatus()).daily.agentsUsed, used);
    await assert.rejects(other.quotas.getStatus(`user-${TAG}`), Forbidden);
  });
});

describe("teams and the enterprise tree", () => {
  const org = `corp-${TAG}`;
  const child = `eng-${TAG}`;
  const team = `team-${TAG}`;
  const [alice, bob] = [`alice-${TAG}`, `bob-${TAG}`];
  const manager = client("manager");

  test("a manager builds its org, a team, members and projects", async () => {
    const root = await manager.quotas.createOrg({ orgId: org, agents: 1000, computeHours: 100 });
    assert.equal(root.orgId, org);
    assert.equal(root.agents, 1000);
    await manager.quotas.createOrg({ orgId: child, parentId: org, agents: 600 });
    const tree = await manager.quotas.orgHierarchy(child);
    assert.deepEqual(
      tree.ancestors.map((o) => o.orgId),
      [org],
    );
    assert.equal(tree.org.agents, 600);
    await assert.rejects(manager.quotas.updateOrg(child, { agents: 1001 }), (err) => {
      assert.ok(err instanceof Conflict);
      assert.equal(err.status, 409);
      assert.equal(err.code, "CONFLICT");
      return true;
    });
    assert.equal((await manager.quotas.updateOrg(child, { agents: 700 })).agents, 700);
    assert.equal((await manager.quotas.orgHierarchy(org)).descendants[0].agents, 700);

    const created = await manager.quotas.createTeam({
      teamId: team,
      teamName: "Research",
      totalAgentPool: 100,
      totalComputeHours: 10,
      totalStorageGB: 5,
    });
    assert.equal(created.orgId, org);
    assert.equal(created.config.totalStorageGB, 5);
    assert.equal((await manager.quotas.setMember(team, alice, { agentsAllocated: 60 })).agentsAllocated, 60);
    await manager.quotas.setMember(team, bob, { agentsAllocated: 30 });
    await assert.rejects(manager.quotas.setMember(team, bob, { agentsAllocated: 50 }), Conflict); // 60 + 50 > 100
    const withProject = await manager.quotas.setProject(team, "p1", { agentsAllocated: 20, name: "Project" });
    assert.deepEqual(
      withProject.projects.map((p) => p.projectId),
      ["p1"],
    );
  });

  test("a transfer under one Idempotency-Key happens once", async () => {
    const move = { fromUserId: alice, toUserId: bob, agents: 10 };
    const first = await manager.quotas.transfer(team, move, { idempotencyKey: `move-${TAG}` });
    const again = await manager.quotas.transfer(team, move, { idempotencyKey: `move-${TAG}` });
    assert.deepEqual(again, first);
    const members = Object.fromEntries((await manager.quotas.team(team)).members.map((m) => [m.userId, m]));
    assert.equal(members[alice].agentsAllocated, 50);
    assert.equal(members[bob].agentsAllocated, 40);
    await assert.rejects(manager.quotas.transfer(team, { ...move, agents: 51 }), Conflict);
  });

  test("setConfig sets a member's limits; outsiders see nothing", async () => {
    const config = {
      userId: alice,
      dailyAgentLimit: 7,
      weeklyAgentLimit: 70,
      monthlyAgentLimit: 700,
      dailyComputeHours: 1,
      maxConcurrentAgents: 3,
      maxStorageGB: 1,
    };
    assert.equal((await manager.quotas.setConfig(config)).dailyAgentLimit, 7);
    assert.equal((await manager.quotas.getStatus(alice)).daily.agentsLimit, 7);
    const outsider = client("other");
    await assert.rejects(outsider.quotas.team(team), Forbidden);
    await assert.rejects(outsider.quotas.orgHierarchy(org), Forbidden);
    await assert.rejects(outsider.quotas.updateOrg(org, { agents: 1 }), Forbidden);
  });
});
