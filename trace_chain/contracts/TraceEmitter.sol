// SPDX-License-Identifier: MIT
// Dev-chain traffic for Trace tests and the Lite demo: every call shape an indexer must store.
// Compiled by trace_chain/devchain.py (`python -m trace_chain.devchain compile-emitter`) with
// solc-js pinned in package.json; the output is committed next to this file as TraceEmitter.json.
pragma solidity 0.8.37;

contract TraceEmitter {
    // topic0 + 2 indexed topics: the common case.
    event Ping(address indexed sender, uint256 indexed seq, bytes32 tag, uint256 value);
    // topic0 + 3 indexed topics: every topic column filled.
    event Triple(uint256 indexed seq, uint256 indexed index, address indexed sender);
    // topic0 only, dynamic data.
    event Note(bytes data);
    // Anonymous: no topic0 at all.
    event Raw(uint256 seq, uint256 count) anonymous;

    uint256 public seq;

    function ping(bytes32 tag) external payable {
        seq += 1;
        emit Ping(msg.sender, seq, tag, msg.value);
    }

    function burst(uint256 count) external {
        seq += 1;
        for (uint256 i = 0; i < count; i++) {
            emit Triple(seq, i, msg.sender);
        }
        emit Note(abi.encodePacked("burst", seq, count));
        emit Raw(seq, count);
    }

    function fail() external pure {
        revert("TraceEmitter: fail");
    }
}
