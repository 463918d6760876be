"""The dashboard in a real browser against a real three-member cluster.

The page of a follower shows three members and the leader; after ``kill -9`` of the
leader it shows the new leader and the election on its timeline without a reload; a
key written with etcdctl appears in the key browser and the live watch feed; with
auth enabled an anonymous page shows nothing of the cluster. The request and backend
commit charts get data from the viewer's own writes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.framework import Cluster, running_cluster

pw = pytest.importorskip("playwright.sync_api")
expect = pw.expect

FAST = ("--heartbeat-interval", "50", "--election-timeout", "500")


def _follower(c: Cluster, leader_name: str) -> Any:
    return next(m for m in c.members if m.name != leader_name)


def test_cluster_failover_keys_and_watch(page: Any, shots: Path) -> None:
    with running_cluster("pyetcd", 3, extra_args=FAST) as c:
        leader = c.wait_leader()
        viewer = _follower(c, leader.name)
        page.goto(f"{viewer.client_url}/dashboard/")

        members = page.locator("#members .member")
        expect(members).to_have_count(3)
        for m in c.members:
            expect(page.locator(f'#members .member[data-name="{m.name}"]')).to_be_visible()
        expect(page.locator("#members .member.leader")).to_have_attribute("data-name", leader.name)
        expect(page.locator("#members .member.leader")).to_have_count(1)

        # A key written with stock etcdctl shows in the watch feed and the key browser.
        expect(page.locator("#watch-feed li").first).to_contain_text("watching every key")
        c.etcdctl("put", "/demo/greeting", "hello from etcdctl")
        expect(page.locator('#watch-feed .watch-event[data-key="/demo/greeting"]')).to_contain_text(
            "hello from etcdctl"
        )
        expect(page.locator('#keys-tree .leaf[data-key="/demo/greeting"]')).to_be_visible()
        page.locator('#keys-tree .leaf[data-key="/demo/greeting"]').click()
        expect(page.locator("#key-detail pre.value")).to_have_text("hello from etcdctl")
        page.screenshot(path=str(shots / "cluster.png"), full_page=True)

        # The request and backend-commit charts chart the viewer's own /metrics numbers
        # once it serves writes; request latency needs --metrics=extensive and says so.
        for i in range(5):
            c.etcdctl("put", f"/demo/n{i}", str(i), endpoints=viewer.client_url)
        for chart in ("chart-requests", "chart-commit"):
            page.wait_for_function(
                f"Number(document.getElementById('{chart}').dataset.max) > 0", timeout=15_000
            )
        expect(page.locator("#latency-note")).to_be_visible()
        expect(page.locator("#latency-note")).to_contain_text("--metrics=extensive")
        expect(page.locator("#chart-latency")).to_have_attribute("data-points", "0")

        # Move the leadership from the page to the third member (root may: auth is off).
        target = next(m for m in c.members if m.name not in (leader.name, viewer.name))
        page.locator(f'#members .member[data-name="{target.name}"] .move-leader').click()
        expect(page.locator("#members .member.leader")).to_have_attribute("data-name", target.name)
        leader = c.wait_leader()
        assert leader.name == target.name

        # kill -9 the leader: the same page, never reloaded, shows the new leader and
        # the election on its timeline.
        leader.kill()
        survivors = [m for m in c.members if m is not leader]
        new = c.wait_leader(among=survivors, timeout=20)
        card = page.locator("#members .member.leader")
        expect(card).to_have_attribute("data-name", new.name, timeout=20_000)
        expect(page.locator(f'#members .member[data-name="{leader.name}"]')).to_have_class(
            re.compile(r"\bdown\b")
        )
        won = page.locator("#timeline li.ev", has_text="became leader at term").filter(
            has_text=new.name
        )
        expect(won.first).to_be_visible()
        expect(page.locator("#timeline li.ev", has_text="became candidate").first).to_be_visible()
        page.screenshot(path=str(shots / "failover.png"), full_page=True)


def test_auth_anonymous_sees_nothing(page: Any, shots: Path) -> None:
    with running_cluster("pyetcd", 3, extra_args=FAST) as c:
        c.wait_leader()
        c.etcdctl("user", "add", "root:rootpw")
        c.etcdctl("user", "add", "alice:alicepw")
        c.etcdctl("role", "add", "reader", "--user", "root:rootpw", check=False)
        c.etcdctl("auth", "enable")
        c.etcdctl("--user", "root:rootpw", "put", "/secret/k", "hidden-value")
        m = c.members[0]
        page.goto(f"{m.client_url}/dashboard/")
        expect(page.locator("#login")).to_be_visible()
        expect(page.locator("#main")).to_be_hidden()
        page.wait_for_timeout(1500)  # let any feed that would leak data arrive
        body = page.locator("body").inner_text()
        for name in (mm.name for mm in c.members):
            assert name not in body
        assert "hidden-value" not in body and "/secret/k" not in body
        assert page.locator("#members .member").count() == 0
        page.screenshot(path=str(shots / "auth-anonymous.png"), full_page=True)

        # A user without roles signs in: sees the cluster, but not the keys it may not read.
        page.fill("#login-user", "alice")
        page.fill("#login-password", "alicepw")
        page.click("#login-submit")
        expect(page.locator("#members .member")).to_have_count(3)
        expect(page.locator("#keys-error")).to_contain_text("permission denied")
        assert page.locator('#keys-tree .leaf[data-key="/secret/k"]').count() == 0

        # root sees the key.
        page.click("#logout")
        expect(page.locator("#login")).to_be_visible()
        page.fill("#login-user", "root")
        page.fill("#login-password", "rootpw")
        page.click("#login-submit")
        expect(page.locator('#keys-tree .leaf[data-key="/secret/k"]')).to_be_visible()
