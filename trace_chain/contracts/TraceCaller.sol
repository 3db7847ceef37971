// SPDX-License-Identifier: MIT
// Dev-chain traffic with internal calls, for the `traces` dataset: a contract calling another
// (with value), a factory creating a contract, an inner call that reverts while the outer
// call succeeds, and a create two calls deep. Compiled like TraceEmitter.sol (`python -m trace_chain.devchain compile-emitter`);
// the output is committed next to this file as TraceCaller.json.
pragma solidity 0.8.37;

// Created by TraceCaller.spawn: a contract created by a contract, not by a transaction.
contract TraceChild {
    address public immutable parent;

    constructor() payable {
        parent = msg.sender;
    }
}

contract TraceCaller {
    event Relayed(address indexed target, bool ok);
    event Spawned(address indexed child);

    // Calls `target.ping(tag)` forwarding the value: call -> call, value moved by a contract.
    function relay(address target, bytes32 tag) external payable {
        (bool ok, ) = target.call{value: msg.value}(abi.encodeWithSignature("ping(bytes32)", tag));
        require(ok, "TraceCaller: relay failed");
        emit Relayed(target, ok);
    }

    // Creates a TraceChild (a CREATE inside the call), passing on the value.
    function spawn() external payable returns (address child) {
        child = address(new TraceChild{value: msg.value}());
        emit Spawned(child);
    }

    // Calls its own `spawn` (an external call to itself), so the create is two frames deep.
    function nest() external {
        this.spawn();
    }

    // Calls `target.fail()`, which reverts; the outer call goes on and succeeds.
    function tryFail(address target) external {
        (bool ok, ) = target.call(abi.encodeWithSignature("fail()"));
        emit Relayed(target, ok);
    }
}
