"""The suite's `free_port()` hands out ports no other worker and no kernel choice can take."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.ports import BLOCK_SIZE, PortBlock, free_port, worker_block

EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")


def ephemeral_low() -> int:
    """The lowest port the kernel hands out for `bind(0)` and outgoing connections."""
    return int(EPHEMERAL.read_text().split()[0]) if EPHEMERAL.exists() else 32768


def test_ports_come_from_below_the_ephemeral_range() -> None:
    ports = [free_port() for _ in range(50)]
    assert all(port < ephemeral_low() for port in ports), ports


def test_each_worker_and_the_controller_have_blocks_of_their_own() -> None:
    blocks = [worker_block(None)] + [worker_block(f"gw{n}") for n in range(8)]
    taken = [set(block) for block in blocks]
    assert all(len(block) == BLOCK_SIZE for block in taken)
    assert len(set().union(*taken)) == BLOCK_SIZE * len(blocks)
    assert max(block.stop for block in blocks) <= ephemeral_low()
    assert worker_block("master") == worker_block(None)


def test_a_process_hands_out_no_port_twice_until_its_block_wraps() -> None:
    block = worker_block("gw7")
    turn = PortBlock(block, start=BLOCK_SIZE - 3)
    ports = [turn.next_free() for _ in range(BLOCK_SIZE // 2)]
    assert len(set(ports)) == len(ports)
    assert set(ports) <= set(block)


def test_a_port_something_listens_on_is_passed_over() -> None:
    block = worker_block("gw6")
    held = block.start + 1
    with socket.create_server(("127.0.0.1", held)):
        turn = PortBlock(block, start=0)
        ports = [turn.next_free() for _ in range(3)]
    assert held not in ports and set(ports) <= set(block), ports
